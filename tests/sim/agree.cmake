# Agreement simulator (agent/agree.h, agent/hlc.h), tests/sim/sim_agree.c. Every seed: a 5..9
# node cluster through partitions, loss, crashes, a departure, forged certificates and a node
# away for a day. SEED=n replays one seed verbosely; an argument sets the number of seeds.
#  - sim_agree_chaos: 1000 seeds, dissemination modelled by the simulator itself;
#  - sim_agree_gossip: 6 seeds, everything carried by real gossip cores on the gossip harness.
shoal_c_test(sim_agree_chaos SOURCES ${CMAKE_CURRENT_LIST_DIR}/sim_agree.c LIB shoal_agent
             TIMEOUT 300 LABELS sim)
if(EXISTS ${CMAKE_CURRENT_LIST_DIR}/sim_gossip_harness.c)
  shoal_c_test(sim_agree_gossip SOURCES ${CMAKE_CURRENT_LIST_DIR}/sim_agree.c
               ${CMAKE_CURRENT_LIST_DIR}/sim_gossip_harness.c LIB shoal_agent
               TIMEOUT 300 LABELS sim)
  target_compile_definitions(sim_agree_gossip PRIVATE SIM_AGREE_GOSSIP)
endif()
