# Store benchmark (built, never run by ctest): bench_store prints a table.
add_executable(bench_store ${CMAKE_CURRENT_SOURCE_DIR}/store_bench.c)
target_link_libraries(bench_store PRIVATE shoal_store)
