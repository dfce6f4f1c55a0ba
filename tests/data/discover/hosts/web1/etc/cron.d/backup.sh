# a cron.d file with a dot in its name: Debian's cron never reads it
0 1 * * * root /usr/local/bin/backup-www > /var/log/backup-www.log 2>&1
