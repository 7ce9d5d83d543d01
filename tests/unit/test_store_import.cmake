# unit_store_import runs the example artifacts under examples/: their path for runs outside
# ctest (ctest also passes SHOAL_SOURCE_DIR in the environment).
target_compile_definitions(unit_store_import PRIVATE
                           SHOAL_SOURCE_DIR_DEFAULT="${CMAKE_SOURCE_DIR}")
set_tests_properties(unit_store_import PROPERTIES TIMEOUT 120)
