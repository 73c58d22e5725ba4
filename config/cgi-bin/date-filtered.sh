# Seed 004, "CGI": the same script, not executable and with no #! line, so
# it is run as a FilteredScript by the interpreter that cgi.interpreters
# names for .sh (/bin/sh), as in the seed.

echo "Content-Type: text/plain"
echo
echo "run by a FilteredScript"
/bin/date
