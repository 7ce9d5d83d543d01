# Agreement simulator (agent/agree/agree.h, agent/base/hlc.h), tests/sim/sim_agree.c: every seed
# a cluster with membership churn (joins also on a partition's minority side, leaves, removals,
# restarts from persisted state, kill -9 between persisting a vote and gossiping it), partitions
# longer than the reap time, mismatched --quorum configurations and split rollback targets.
# SEED=n replays one seed verbosely; an argument sets the number of seeds.
# 100,000 seeds in a Release build: tests/bench/agree_soak.sh.
shoal_c_test(sim_agree_chaos SOURCES ${CMAKE_CURRENT_LIST_DIR}/sim_agree.c LIB shoal_agent
             TIMEOUT 600 LABELS sim)
# The same scenarios with dissemination by real gossip cores on the gossip harness (6 seeds).
if(EXISTS ${CMAKE_CURRENT_LIST_DIR}/sim_gossip_harness.c)
  shoal_c_test(sim_agree_gossip SOURCES ${CMAKE_CURRENT_LIST_DIR}/sim_agree.c
               ${CMAKE_CURRENT_LIST_DIR}/sim_gossip_harness.c LIB shoal_agent
               TIMEOUT 600 LABELS sim)
  target_compile_definitions(sim_agree_gossip PRIVATE SIM_AGREE_GOSSIP)
endif()
