file(REMOVE_RECURSE
  "CMakeFiles/bt86_runtime.dir/direct_executor.cpp.o"
  "CMakeFiles/bt86_runtime.dir/direct_executor.cpp.o.d"
  "CMakeFiles/bt86_runtime.dir/host_signals.cpp.o"
  "CMakeFiles/bt86_runtime.dir/host_signals.cpp.o.d"
  "CMakeFiles/bt86_runtime.dir/ldt_mirror.cpp.o"
  "CMakeFiles/bt86_runtime.dir/ldt_mirror.cpp.o.d"
  "CMakeFiles/bt86_runtime.dir/world_switch.S.o"
  "libbt86_runtime.a"
  "libbt86_runtime.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang ASM CXX)
  include(CMakeFiles/bt86_runtime.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
