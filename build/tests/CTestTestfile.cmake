# CMake generated Testfile for 
# Source directory: /work/main/tests
# Build directory: /work/main/build/tests
# 
# This file includes the relevant testing commands required for 
# testing this directory and lists subdirectories to be tested as well.
add_test(test_ir "/work/main/build/tests/test_ir")
set_tests_properties(test_ir PROPERTIES  ENVIRONMENT "CMOCKA_MESSAGE_OUTPUT=stdout" TIMEOUT "600" _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;12;add_test;/work/main/tests/CMakeLists.txt;0;")
