# Agreement simulator (agent/agree.h, agent/hlc.h), tests/sim/sim_agree.c: every seed a cluster
# with membership churn (joins also on a partition's minority side, leaves, removals, restarts
# from persisted state, kill -9 between persisting a vote and gossiping it), partitions longer
# than the reap time, mismatched --quorum configurations and split rollback targets.
# SEED=n replays one seed verbosely; an argument sets the number of seeds.
# 100,000 seeds in a Release build: tests/bench/agree_soak.sh.
shoal_c_test(sim_agree_chaos SOURCES ${CMAKE_CURRENT_LIST_DIR}/sim_agree.c LIB shoal_agent
             TIMEOUT 300 LABELS sim)
