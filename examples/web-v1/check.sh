#!/bin/sh
# Health check of web 1.0.0: healthy.
echo "web 1.0.0: ok"
exit 0
