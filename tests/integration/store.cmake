# Store integration tests (owned by the store module).
# store_crasher: imports with fsync on and ACKs each commit; store_crash_test kill -9s it 50
# times and checks every ACKed artifact afterwards.
add_executable(store_crasher ${CMAKE_CURRENT_SOURCE_DIR}/store_crasher.c)
target_link_libraries(store_crasher PRIVATE shoal_store)
shoal_c_test(integration_store_crash SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/store_crash_test.c
             LIB shoal_store TIMEOUT 180 LABELS integration)
target_compile_definitions(integration_store_crash PRIVATE
                           STORE_CRASHER="$<TARGET_FILE:store_crasher>")
add_dependencies(integration_store_crash store_crasher)
