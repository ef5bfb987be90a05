file(REMOVE_RECURSE
  "libkiln.a"
  "libkiln.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/kiln_static.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
