# tests/system/electorate.cmake: system tests of the electorate (issue 11), each with real
# agentd processes in network namespaces (netlab.sh, helpers electorate_lib.sh). Each one
# reproduces one of the issue's "What breaks today" behaviours and fails on the code before
# the fix (4055f87). Root only: "SKIP: <reason>" and exit 77 otherwise. SHOAL_TEST_AGENTD and
# SHOAL_TEST_AGENTCTL run them against other binaries (electorate_lib.sh).
#  system_electorate_split_restart  (3) a 2 | 2 split between "previous" and --to 1; kill -9
#                                   and restart: votes keep their targets, no forged quorum;
#                                   the split then resolves into one decision everywhere
#  system_electorate_split_resolve  (7) the same split resolves by re-cast rounds
# el_test(NAME SCRIPT MODE): shoal_sh_test with an argument for the script (one script, two
# behaviours)
function(el_test name script mode)
  add_test(NAME ${name} COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/${script} ${mode})
  set_tests_properties(${name} PROPERTIES TIMEOUT 120 ENVIRONMENT "${SHOAL_TEST_ENV}"
                       SKIP_RETURN_CODE 77 LABELS system)
endfunction()
el_test(system_electorate_split_restart test_electorate_split.sh restart)
el_test(system_electorate_split_resolve test_electorate_split.sh resolve)
#  system_electorate_joiners_decide (1) 3 new nodes join the minority of a 2 | 3 split; operator
#                                   votes on both sides: no two decisions for one revision
#  system_electorate_joiners_grown  (5) same lab, health votes on the majority: after healing,
#                                   the side that grew accepts the majority's certificate
el_test(system_electorate_joiners_decide test_electorate_joiners.sh decide)
el_test(system_electorate_joiners_grown test_electorate_joiners.sh grown)
#  system_electorate_condemn        (6) a minority deploy wins the rolled-back rev after healing:
#                                   v2 (voted against) condemned and refused everywhere, v3 nowhere
el_test(system_electorate_condemn test_electorate_condemn.sh -)
#  system_electorate_reap           (2) a 2 | 3 split outlasting the reap time (--reap-after 3s
#                                   when agentd has it; a restart with the clock 73 h ahead via
#                                   libfaketime): the minority never decides; after healing the
#                                   halves find each other unaided and converge
el_test(system_electorate_reap test_electorate_reap.sh -)
