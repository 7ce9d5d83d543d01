# agentd cluster integration (agent/cluster/cluster.c): real agentd processes gossiping on loopback.
shoal_sh_test(integration_agent_cluster ${CMAKE_CURRENT_SOURCE_DIR}/cluster_agents.sh
              TIMEOUT 300 LABELS integration)
shoal_sh_test(integration_agent_cluster_basic ${CMAKE_CURRENT_SOURCE_DIR}/cluster_basic.sh
              TIMEOUT 180 LABELS integration)
