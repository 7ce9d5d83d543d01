# Integration tests of the cluster brain (agent/fleet/fleet.h): real agentd processes on loopback.
foreach(t rollback operator noquorum kill pacing scope roster opkeys wave enrol)
  shoal_sh_test(integration_agent_brain_${t} ${CMAKE_CURRENT_SOURCE_DIR}/brain_${t}.sh
                TIMEOUT 180 LABELS integration)
endforeach()
# An insider holding only the cluster key (forge.c) against signed votes, certificates and
# roster records (agent/base/sign.h).
add_executable(forge ${CMAKE_CURRENT_SOURCE_DIR}/forge.c)
target_link_libraries(forge PRIVATE shoal_fleet shoal_gossip shoal_agree shoal_agent_base)
shoal_sh_test(integration_agent_brain_forge ${CMAKE_CURRENT_SOURCE_DIR}/brain_forge.sh
              TIMEOUT 240 LABELS integration)
set_property(TEST integration_agent_brain_forge APPEND PROPERTY ENVIRONMENT
             "FORGE=$<TARGET_FILE:forge>")
# Key rotation (agent/base/sign.h): forge.c makes a rotation not signed by the bound key.
shoal_sh_test(integration_agent_brain_rotate ${CMAKE_CURRENT_SOURCE_DIR}/brain_rotate.sh
              TIMEOUT 240 LABELS integration)
set_property(TEST integration_agent_brain_rotate APPEND PROPERTY ENVIRONMENT
             "FORGE=$<TARGET_FILE:forge>")
