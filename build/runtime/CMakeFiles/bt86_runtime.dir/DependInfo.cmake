
# Consider dependencies only in project.
set(CMAKE_DEPENDS_IN_PROJECT_ONLY OFF)

# The set of languages for which implicit dependencies are needed:
set(CMAKE_DEPENDS_LANGUAGES
  "ASM"
  )
# The set of files for implicit dependencies of each language:
set(CMAKE_DEPENDS_CHECK_ASM
  "/work/main/runtime/world_switch.S" "/work/main/build/runtime/CMakeFiles/bt86_runtime.dir/world_switch.S.o"
  )
set(CMAKE_ASM_COMPILER_ID "GNU")

# Preprocessor definitions for this target.
set(CMAKE_TARGET_DEFINITIONS_ASM
  "FMT_SHARED"
  "SPDLOG_COMPILED_LIB"
  "SPDLOG_FMT_EXTERNAL"
  "SPDLOG_SHARED_LIB"
  )

# The include file search paths:
set(CMAKE_ASM_TARGET_INCLUDE_PATH
  "/work/main"
  "/usr/include"
  )

# The set of dependency files which are needed:
set(CMAKE_DEPENDS_DEPENDENCY_FILES
  "/work/main/runtime/direct_executor.cpp" "runtime/CMakeFiles/bt86_runtime.dir/direct_executor.cpp.o" "gcc" "runtime/CMakeFiles/bt86_runtime.dir/direct_executor.cpp.o.d"
  "/work/main/runtime/host_signals.cpp" "runtime/CMakeFiles/bt86_runtime.dir/host_signals.cpp.o" "gcc" "runtime/CMakeFiles/bt86_runtime.dir/host_signals.cpp.o.d"
  "/work/main/runtime/ldt_mirror.cpp" "runtime/CMakeFiles/bt86_runtime.dir/ldt_mirror.cpp.o" "gcc" "runtime/CMakeFiles/bt86_runtime.dir/ldt_mirror.cpp.o.d"
  )

# Targets to which this target links.
set(CMAKE_TARGET_LINKED_INFO_FILES
  "/work/main/build/mmu/CMakeFiles/bt86_mmu.dir/DependInfo.cmake"
  "/work/main/build/base/CMakeFiles/bt86_base.dir/DependInfo.cmake"
  )

# Fortran module output directory.
set(CMAKE_Fortran_TARGET_MODULE_DIR "")
