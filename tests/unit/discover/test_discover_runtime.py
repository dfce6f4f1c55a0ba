"""Guessing what a cron command runs, and whether it handles its own output."""

from __future__ import annotations

import pytest

from corral.discover.parse import RUNTIMES, guess_runtime, output_redirection


@pytest.mark.parametrize(
    ("command", "runtime"),
    [
        # PHP, as seed 003's Laravel project ran it
        ("cd /var/www/digger && php artisan schedule:run >> /dev/null 2>&1", "php"),
        ("/usr/bin/php7.4 -f /var/www/shop/cron/close_day.php", "php"),
        ("/var/www/digger/artisan stats:daily", "php"),
        ('su - www-data -s /bin/sh -c "cd /var/www && php bin/console app:nightly"', "php"),
        ("sudo -u www-data php /var/www/cron.php", "php"),
        ("sudo -iu app php x.php", "php"),
        ("pgrep -f queue:work >/dev/null || nohup php artisan queue:work &", "php"),
        # Python
        ("/opt/report/venv/bin/python /opt/report/export.py --date=$(date +%F)", "python"),
        ("cd /opt/report && python -m report.monthly", "python"),
        ("/usr/bin/env python3 /opt/misc/cleanup.py", "python"),
        ("nice -n 19 ionice -c3 /usr/bin/python3.11 /opt/x.py", "python"),
        ("flock -xw 10 /tmp/l -c 'python3 a.py'", "python"),
        ("FOO=1 /opt/venv/bin/celery -A tasks call nightly", "python"),
        ("/opt/report/kpi.py | mail -s kpi sales@example.com", "python"),
        # Go and other binaries
        ("/usr/bin/flock -n /var/lock/settle.lock /opt/batch/bin/settle-payments -config x.yaml", "go-or-binary"),
        ("timeout 3h nice -n 10 /opt/batch/bin/rebuild-index --all", "go-or-binary"),
        ("cd /opt/batch && ./bin/archive-logs -days 30 > /dev/null 2>&1", "go-or-binary"),
        ("/usr/local/go/bin/go run /opt/batch/tools/cleanup/main.go", "go-or-binary"),
        ("/bin/bash -lc 'source ~/.profile && /opt/misc/bin/aggregate'", "go-or-binary"),
        # shell
        ("/opt/misc/scripts/run.sh --quiet", "shell"),
        ("/bin/sh /opt/x/run", "shell"),
        ("test -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.daily; }", "shell"),
        ("curl -fsS -m 10 https://hc.example.com/ping/abc > /dev/null", "shell"),
        ("sudo -u postgres /usr/bin/pg_dump shop | gzip > /backup/shop.sql.gz", "shell"),
        ("tar czf /backup/www-$(date +%Y%m%d).tgz /var/www", "shell"),
        # the rest
        ("java -Xmx2g -jar /opt/settlement.jar --env prod", "java"),
        ("/usr/bin/node /opt/crawler/index.js >> /var/log/crawler.log 2>&1", "node"),
        ("cd /opt/rails && bundle exec rake reports:nightly", "ruby"),
        ("perl /opt/legacy/rotate.pl", "perl"),
        ("", ""),
    ],
)
def test_it_guesses_the_runtime_through_wrappers(command: str, runtime: str) -> None:
    assert guess_runtime(command) == runtime
    assert runtime == "" or runtime in RUNTIMES


def test_a_shebang_decides_for_a_script_without_an_extension() -> None:
    assert guess_runtime("/etc/cron.daily/digger-cleanup", "/usr/bin/env python3") == "python"
    assert guess_runtime("/etc/cron.daily/logrotate", "/bin/sh") == "shell"
    assert guess_runtime("/etc/cron.daily/x") == "go-or-binary"


def test_unbalanced_quotes_do_not_break_the_guess() -> None:
    assert guess_runtime("php /var/www/x.php 'oops") == "php"


@pytest.mark.parametrize(
    ("command", "handled"),
    [
        ("x >> /var/log/x.log 2>&1", (True, True)),
        ("x >/dev/null 2>&1", (True, True)),
        ("x &>/dev/null", (True, True)),
        ("x 1>/tmp/o 2>/tmp/e", (True, True)),
        ("x 2>&1 | logger -t x", (True, True)),
        ("x |& logger", (True, True)),
        ("chronic /opt/x", (True, True)),
        ("x > /dev/null", (True, False)),
        ("x | logger", (True, False)),
        ("x 2>&1 >/dev/null", (True, False)),
        ("x 2>/dev/null", (False, True)),
        ("x", (False, False)),
        ("x 2>&1 | grep -v noise", (False, False)),
    ],
)
def test_it_tells_which_output_streams_a_command_takes_care_of(command: str, handled: tuple[bool, bool]) -> None:
    assert output_redirection(command) == handled
