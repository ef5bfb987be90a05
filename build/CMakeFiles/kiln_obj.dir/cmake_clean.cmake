file(REMOVE_RECURSE
  "CMakeFiles/kiln_obj.dir/src/core/alloc.c.o"
  "CMakeFiles/kiln_obj.dir/src/core/alloc.c.o.d"
  "CMakeFiles/kiln_obj.dir/src/core/arena.c.o"
  "CMakeFiles/kiln_obj.dir/src/core/arena.c.o.d"
  "CMakeFiles/kiln_obj.dir/src/core/cpu.c.o"
  "CMakeFiles/kiln_obj.dir/src/core/cpu.c.o.d"
  "CMakeFiles/kiln_obj.dir/src/core/log.c.o"
  "CMakeFiles/kiln_obj.dir/src/core/log.c.o.d"
  "CMakeFiles/kiln_obj.dir/src/core/status.c.o"
  "CMakeFiles/kiln_obj.dir/src/core/status.c.o.d"
  "CMakeFiles/kiln_obj.dir/src/core/util.c.o"
  "CMakeFiles/kiln_obj.dir/src/core/util.c.o.d"
  "CMakeFiles/kiln_obj.dir/src/ir/graph.c.o"
  "CMakeFiles/kiln_obj.dir/src/ir/graph.c.o.d"
  "CMakeFiles/kiln_obj.dir/src/ir/helpers.c.o"
  "CMakeFiles/kiln_obj.dir/src/ir/helpers.c.o.d"
  "CMakeFiles/kiln_obj.dir/src/ir/ops/elementwise.c.o"
  "CMakeFiles/kiln_obj.dir/src/ir/ops/elementwise.c.o.d"
  "CMakeFiles/kiln_obj.dir/src/ir/ops/linalg.c.o"
  "CMakeFiles/kiln_obj.dir/src/ir/ops/linalg.c.o.d"
  "CMakeFiles/kiln_obj.dir/src/ir/ops/nn.c.o"
  "CMakeFiles/kiln_obj.dir/src/ir/ops/nn.c.o.d"
  "CMakeFiles/kiln_obj.dir/src/ir/ops/shape.c.o"
  "CMakeFiles/kiln_obj.dir/src/ir/ops/shape.c.o.d"
  "CMakeFiles/kiln_obj.dir/src/ir/ops_table.c.o"
  "CMakeFiles/kiln_obj.dir/src/ir/ops_table.c.o.d"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/kiln_obj.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
