# Gossip core on the simulator (tests/sim/sim_gossip.c): one executable, one ctest per
# scenario. SEED=n in the environment replays a run; every run prints its seed first.
add_executable(sim_gossip ${CMAKE_CURRENT_LIST_DIR}/sim_gossip.c
               ${CMAKE_CURRENT_LIST_DIR}/sim_gossip_harness.c)
target_link_libraries(sim_gossip PRIVATE shoal_gossip)

function(sim_gossip_test name)
  add_test(NAME sim_gossip_${name} COMMAND sim_gossip ${ARGN})
  set_tests_properties(sim_gossip_${name} PROPERTIES TIMEOUT 300 LABELS sim
                       ENVIRONMENT "${SHOAL_TEST_ENV}")
endfunction()

sim_gossip_test(converge_3 converge 3)
sim_gossip_test(converge_10 converge 10)
sim_gossip_test(converge_100 converge 100)
sim_gossip_test(converge_1000 converge 1000)
sim_gossip_test(records_128 records 128)
sim_gossip_test(detect detect)
sim_gossip_test(detect_schedule detect_schedule)
sim_gossip_test(partition_heal partition)
sim_gossip_test(rejoin_day rejoin_day)
sim_gossip_test(loss_20 loss)
sim_gossip_test(slow_node slow)
sim_gossip_test(churn churn)
sim_gossip_test(broken_link link)
sim_gossip_test(isolated_day isolated_day)
sim_gossip_test(mass_join_400 mass_join 400)
