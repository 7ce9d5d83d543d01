# tests/integration/electorate.cmake: integration tests of the electorate (issue 11), real
# agentd processes on loopback (helpers electorate_lib.sh over brain_lib.sh). Each reproduces
# one of the issue's "What breaks today" behaviours and fails on the code before the fix
# (4055f87); the partition ones are system tests (tests/system/electorate.cmake).
#  integration_electorate_joiner  (1) a brand-new node does not decide alone (1 of 3 voted)
foreach(t joiner)
  shoal_sh_test(integration_electorate_${t} ${CMAKE_CURRENT_SOURCE_DIR}/electorate_${t}.sh
                TIMEOUT 120 LABELS integration)
endforeach()
