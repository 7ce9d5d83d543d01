# tests/integration/electorate.cmake: integration tests of the electorate (issue 11), real
# agentd processes on loopback (helpers electorate_lib.sh over brain_lib.sh). Each reproduces
# one of the issue's "What breaks today" behaviours and fails on the code before the fix
# (4055f87); the partition ones are system tests (tests/system/electorate.cmake).
#  integration_electorate_joiner  (1) a brand-new node does not decide alone (1 of 3 voted)
#  integration_electorate_stop    (5) a SIGTERM'd node is not a leave: 2 of 4 never decide
#  integration_electorate_quorum  (4) nodes with different --quorum follow the record's rule
#                                 and never diverge on rev 3; the odd one says 'config'
#  integration_electorate_local   (8) rollback --local survives SIGTERM and kill -9 restarts
foreach(t joiner stop quorum local)
  shoal_sh_test(integration_electorate_${t} ${CMAKE_CURRENT_SOURCE_DIR}/electorate_${t}.sh
                TIMEOUT 120 LABELS integration)
endforeach()
