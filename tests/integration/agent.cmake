# Integration tests of agentd and agentctl (owned by the agent module): real processes, real
# unix sockets, state in fresh temporary directories.
shoal_c_test(integration_agent_socket SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/agent_socket.c
             LIB shoal_agent TIMEOUT 300 LABELS integration)
shoal_sh_test(integration_agent_cli ${CMAKE_CURRENT_SOURCE_DIR}/agent_cli.sh
              TIMEOUT 300 LABELS integration)
# Building the C test builds the programs both tests drive.
if(TARGET agentd AND TARGET agentctl)
  add_dependencies(integration_agent_socket agentd agentctl)
endif()
# Operability (issue 13): --check-config and drop-ins, membership events, the event hook and its
# bounds, audit lines, history's learn time; real agents on loopback.
shoal_sh_test(integration_agent_ops ${CMAKE_CURRENT_SOURCE_DIR}/agent_ops.sh
              TIMEOUT 240 LABELS integration)
# A real Prometheus scrapes a real cluster through a quorum rollback (no root needed; skips
# without prometheus/promtool); also lints the exposition and examples/prometheus/alerts.yml.
shoal_sh_test(integration_agent_prometheus ${CMAKE_CURRENT_SOURCE_DIR}/agent_prometheus.sh
              TIMEOUT 240 LABELS integration)
