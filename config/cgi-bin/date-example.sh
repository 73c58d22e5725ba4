#!/bin/sh
# Seed 004, "CGI": the seed's date-example.sh, run as a CGIScript (it is
# executable and names its interpreter on the first line).

echo "Content-Type: text/plain"
echo
/bin/date
