file(REMOVE_RECURSE
  "CMakeFiles/test_ir.dir/unit/test_ir.c.o"
  "CMakeFiles/test_ir.dir/unit/test_ir.c.o.d"
  "CMakeFiles/test_ir.dir/unit/testutil.c.o"
  "CMakeFiles/test_ir.dir/unit/testutil.c.o.d"
  "test_ir"
  "test_ir.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/test_ir.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
