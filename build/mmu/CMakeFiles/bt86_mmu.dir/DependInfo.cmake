
# Consider dependencies only in project.
set(CMAKE_DEPENDS_IN_PROJECT_ONLY OFF)

# The set of languages for which implicit dependencies are needed:
set(CMAKE_DEPENDS_LANGUAGES
  )

# The set of dependency files which are needed:
set(CMAKE_DEPENDS_DEPENDENCY_FILES
  "/work/main/mmu/guest_memory.cpp" "mmu/CMakeFiles/bt86_mmu.dir/guest_memory.cpp.o" "gcc" "mmu/CMakeFiles/bt86_mmu.dir/guest_memory.cpp.o.d"
  "/work/main/mmu/guest_window.cpp" "mmu/CMakeFiles/bt86_mmu.dir/guest_window.cpp.o" "gcc" "mmu/CMakeFiles/bt86_mmu.dir/guest_window.cpp.o.d"
  )

# Targets to which this target links.
set(CMAKE_TARGET_LINKED_INFO_FILES
  "/work/main/build/base/CMakeFiles/bt86_base.dir/DependInfo.cmake"
  )

# Fortran module output directory.
set(CMAKE_Fortran_TARGET_MODULE_DIR "")
