# Gossip figures on the simulator (tests/bench/gossip_sim.c): an executable, not a test.
add_executable(bench_gossip_sim ${CMAKE_CURRENT_LIST_DIR}/gossip_sim.c
               ${CMAKE_SOURCE_DIR}/tests/sim/sim_gossip_harness.c)
target_link_libraries(bench_gossip_sim PRIVATE shoal_gossip)
