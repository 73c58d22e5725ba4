#!/bin/sh
# Never answers, and starts a child of its own: for the timeout (504) and
# the client-leaves demos; the service stops both.  /cgi/hang.sh?N sleeps
# N seconds (300 by default).
sleep "${1:-300}"
