#----------------------------------------------------------------
# Generated CMake target import file for configuration "Release".
#----------------------------------------------------------------

# Commands may need to know the format version.
set(CMAKE_IMPORT_FILE_VERSION 1)

# Import target "kiln::kiln" for configuration "Release"
set_property(TARGET kiln::kiln APPEND PROPERTY IMPORTED_CONFIGURATIONS RELEASE)
set_target_properties(kiln::kiln PROPERTIES
  IMPORTED_LOCATION_RELEASE "${_IMPORT_PREFIX}/lib/libkiln.so.0.1.0"
  IMPORTED_SONAME_RELEASE "libkiln.so.0"
  )

list(APPEND _cmake_import_check_targets kiln::kiln )
list(APPEND _cmake_import_check_files_for_kiln::kiln "${_IMPORT_PREFIX}/lib/libkiln.so.0.1.0" )

# Import target "kiln::kiln_static" for configuration "Release"
set_property(TARGET kiln::kiln_static APPEND PROPERTY IMPORTED_CONFIGURATIONS RELEASE)
set_target_properties(kiln::kiln_static PROPERTIES
  IMPORTED_LINK_INTERFACE_LANGUAGES_RELEASE "C"
  IMPORTED_LOCATION_RELEASE "${_IMPORT_PREFIX}/lib/libkiln.a"
  )

list(APPEND _cmake_import_check_targets kiln::kiln_static )
list(APPEND _cmake_import_check_files_for_kiln::kiln_static "${_IMPORT_PREFIX}/lib/libkiln.a" )

# Commands beyond this point should not need to know the version.
set(CMAKE_IMPORT_FILE_VERSION)
