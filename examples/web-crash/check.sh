#!/bin/sh
# Health check of web 3.0.0-crash: would pass; the process never stays up.
echo "web 3.0.0-crash: ok (never reached)"
exit 0
