
# Consider dependencies only in project.
set(CMAKE_DEPENDS_IN_PROJECT_ONLY OFF)

# The set of languages for which implicit dependencies are needed:
set(CMAKE_DEPENDS_LANGUAGES
  )

# The set of dependency files which are needed:
set(CMAKE_DEPENDS_DEPENDENCY_FILES
  "/work/main/src/core/alloc.c" "CMakeFiles/kiln_obj.dir/src/core/alloc.c.o" "gcc" "CMakeFiles/kiln_obj.dir/src/core/alloc.c.o.d"
  "/work/main/src/core/arena.c" "CMakeFiles/kiln_obj.dir/src/core/arena.c.o" "gcc" "CMakeFiles/kiln_obj.dir/src/core/arena.c.o.d"
  "/work/main/src/core/cpu.c" "CMakeFiles/kiln_obj.dir/src/core/cpu.c.o" "gcc" "CMakeFiles/kiln_obj.dir/src/core/cpu.c.o.d"
  "/work/main/src/core/log.c" "CMakeFiles/kiln_obj.dir/src/core/log.c.o" "gcc" "CMakeFiles/kiln_obj.dir/src/core/log.c.o.d"
  "/work/main/src/core/status.c" "CMakeFiles/kiln_obj.dir/src/core/status.c.o" "gcc" "CMakeFiles/kiln_obj.dir/src/core/status.c.o.d"
  "/work/main/src/core/util.c" "CMakeFiles/kiln_obj.dir/src/core/util.c.o" "gcc" "CMakeFiles/kiln_obj.dir/src/core/util.c.o.d"
  "/work/main/src/ir/graph.c" "CMakeFiles/kiln_obj.dir/src/ir/graph.c.o" "gcc" "CMakeFiles/kiln_obj.dir/src/ir/graph.c.o.d"
  "/work/main/src/ir/helpers.c" "CMakeFiles/kiln_obj.dir/src/ir/helpers.c.o" "gcc" "CMakeFiles/kiln_obj.dir/src/ir/helpers.c.o.d"
  "/work/main/src/ir/ops/elementwise.c" "CMakeFiles/kiln_obj.dir/src/ir/ops/elementwise.c.o" "gcc" "CMakeFiles/kiln_obj.dir/src/ir/ops/elementwise.c.o.d"
  "/work/main/src/ir/ops/linalg.c" "CMakeFiles/kiln_obj.dir/src/ir/ops/linalg.c.o" "gcc" "CMakeFiles/kiln_obj.dir/src/ir/ops/linalg.c.o.d"
  "/work/main/src/ir/ops/nn.c" "CMakeFiles/kiln_obj.dir/src/ir/ops/nn.c.o" "gcc" "CMakeFiles/kiln_obj.dir/src/ir/ops/nn.c.o.d"
  "/work/main/src/ir/ops/shape.c" "CMakeFiles/kiln_obj.dir/src/ir/ops/shape.c.o" "gcc" "CMakeFiles/kiln_obj.dir/src/ir/ops/shape.c.o.d"
  "/work/main/src/ir/ops_table.c" "CMakeFiles/kiln_obj.dir/src/ir/ops_table.c.o" "gcc" "CMakeFiles/kiln_obj.dir/src/ir/ops_table.c.o.d"
  )

# Targets to which this target links.
set(CMAKE_TARGET_LINKED_INFO_FILES
  )

# Fortran module output directory.
set(CMAKE_Fortran_TARGET_MODULE_DIR "")
