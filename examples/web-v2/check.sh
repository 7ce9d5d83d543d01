#!/bin/sh
# Health check of web 2.0.0: the release is broken (say, it answers 500 on /healthz).
echo "web 2.0.0: /healthz returned 500" >&2
exit 1
