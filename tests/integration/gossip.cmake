# Gossip transport integration: gossipd (one transport + core per process, a test tool and the
# benchmark's subject until agentd carries the transport) and the multi-process cluster test.
add_executable(gossipd ${CMAKE_CURRENT_SOURCE_DIR}/gossipd.c)
target_link_libraries(gossipd PRIVATE shoal_gossip)
shoal_sh_test(integration_gossip_cluster ${CMAKE_CURRENT_SOURCE_DIR}/gossip_cluster.sh
              TIMEOUT 600 LABELS integration)
# An insider's flood (tests/integration/flood.c) against a real agentd: bounded memory, and
# failure detection still working.
add_executable(flood ${CMAKE_CURRENT_SOURCE_DIR}/flood.c)
target_link_libraries(flood PRIVATE shoal_gossip)
shoal_sh_test(integration_cluster_flood ${CMAKE_CURRENT_SOURCE_DIR}/flood.sh
              TIMEOUT 300 LABELS integration)
