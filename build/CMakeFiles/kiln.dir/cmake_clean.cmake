file(REMOVE_RECURSE
  "libkiln.pdb"
  "libkiln.so"
  "libkiln.so.0"
  "libkiln.so.0.1.0"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/kiln.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
