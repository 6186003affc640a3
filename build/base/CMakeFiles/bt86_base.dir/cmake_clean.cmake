file(REMOVE_RECURSE
  "CMakeFiles/bt86_base.dir/log.cpp.o"
  "CMakeFiles/bt86_base.dir/log.cpp.o.d"
  "libbt86_base.a"
  "libbt86_base.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang CXX)
  include(CMakeFiles/bt86_base.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
