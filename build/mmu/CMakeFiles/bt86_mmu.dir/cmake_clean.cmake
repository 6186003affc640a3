file(REMOVE_RECURSE
  "CMakeFiles/bt86_mmu.dir/guest_memory.cpp.o"
  "CMakeFiles/bt86_mmu.dir/guest_memory.cpp.o.d"
  "CMakeFiles/bt86_mmu.dir/guest_window.cpp.o"
  "CMakeFiles/bt86_mmu.dir/guest_window.cpp.o.d"
  "libbt86_mmu.a"
  "libbt86_mmu.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang CXX)
  include(CMakeFiles/bt86_mmu.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
