# tests/integration/agent_catalog.cmake (issue 14, agent/daemon/catalog.h, agent/fleet/endpoints.h)
#  integration_agent_catalog  two agents on loopback with --http-api: catalog, http_sd,
#                             agentctl endpoints, long-poll (wait, wake-up), drain events,
#                             the parser's refusals, the 256 waiting requests bound (429)
shoal_sh_test(integration_agent_catalog ${CMAKE_CURRENT_SOURCE_DIR}/agent_catalog.sh
              TIMEOUT 180 LABELS integration)
