# Peer-to-peer artifact transfer (agent/cluster/fetch.h): real agentd processes on loopback.
shoal_sh_test(integration_agent_fetch_op ${CMAKE_CURRENT_SOURCE_DIR}/fetch_op.sh
              TIMEOUT 180 LABELS integration)
shoal_sh_test(integration_agent_fetch_deploy ${CMAKE_CURRENT_SOURCE_DIR}/fetch_deploy.sh
              TIMEOUT 180 LABELS integration)
shoal_sh_test(integration_agent_fetch_retry ${CMAKE_CURRENT_SOURCE_DIR}/fetch_retry.sh
              TIMEOUT 240 LABELS integration)
# An outsider holding idle connections to the gossip port (tests/integration/outsider.c) while
# a peer fetches 100 MiB.
add_executable(outsider ${CMAKE_CURRENT_SOURCE_DIR}/outsider.c)
shoal_sh_test(integration_agent_fetch_outsider ${CMAKE_CURRENT_SOURCE_DIR}/fetch_outsider.sh
              TIMEOUT 600 LABELS integration)
