# Integration tests of the cluster brain (agent/fleet/fleet.h): real agentd processes on loopback.
foreach(t rollback operator noquorum kill pacing scope roster)
  shoal_sh_test(integration_agent_brain_${t} ${CMAKE_CURRENT_SOURCE_DIR}/brain_${t}.sh
                TIMEOUT 180 LABELS integration)
endforeach()
