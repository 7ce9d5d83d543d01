# Traffic integration test (owned by the traffic module): the HAProxy driver against a real
# HAProxy 2.6 and busybox httpd backends on 127.0.0.0/8. Exits 77 (skip) without haproxy.
shoal_c_test(integration_traffic_haproxy SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/traffic_haproxy.c
             LIB shoal_traffic TIMEOUT 180 LABELS integration)
set_tests_properties(integration_traffic_haproxy PROPERTIES SKIP_RETURN_CODE 77)
