"""The SSH collector's pure parts: its remote script (run here with /bin/sh
against a saved host tree), the output framing, and where host lists come from."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from corral.discover import collect, ssh

HOSTS = Path(__file__).resolve().parents[2] / "data" / "discover" / "hosts"
MARK = "@@corral-test"


def run_script(root: Path) -> bytes:
    script = ssh.remote_script(MARK, root=str(root), list_timers=False)
    return subprocess.run(["/bin/sh", "-s"], input=script.encode(), capture_output=True, check=True).stdout


@pytest.mark.parametrize("host", ["web1", "batch1", "legacy-php"])
def test_the_remote_script_reads_what_the_local_reader_reads(host: str) -> None:
    files, complete = ssh.parse_output(run_script(HOSTS / host), MARK)
    local = collect.read_host_root(HOSTS / host)
    assert complete
    assert files.files == {path: text for path, text in local.files.items() if path not in (collect.HOST_INFO_PATH, collect.LIST_TIMERS_PATH)}
    assert files.errors == local.errors
    assert files.timezone == local.timezone


def test_the_remote_script_reports_a_missing_root_as_nothing_found(tmp_path: Path) -> None:
    files, complete = ssh.parse_output(run_script(tmp_path / "nothing"), MARK)
    assert complete and files.files == {} and files.errors == {}


def test_parse_output_keeps_exact_bytes_and_skips_noise() -> None:
    data = (
        b"Welcome to host!\n"
        + f"{MARK} F /etc/crontab\n0 1 * * * a\n\n{MARK} Z\n".encode()
        + f"{MARK} F /etc/cron.d/empty\n\n{MARK} Z\n".encode()
        + f"{MARK} F /etc/cron.d/no-newline\n* * * * * b\n{MARK} Z\n".encode()
        + f"{MARK} E /var/spool/cron/crontabs\npermission denied (listing the directory)\n".encode()
        + f"{MARK} L /etc/systemd/system/timers.target.wants/a.timer\n".encode()
        + f"{MARK} T /usr/share/zoneinfo/Asia/Seoul\n{MARK} END\n".encode()
    )
    files, complete = ssh.parse_output(data, MARK)
    assert complete
    assert files.files == {
        "/etc/crontab": "0 1 * * * a\n",
        "/etc/cron.d/empty": "",
        "/etc/cron.d/no-newline": "* * * * * b",
        "/etc/systemd/system/timers.target.wants/a.timer": "",
    }
    assert files.errors == {"/var/spool/cron/crontabs": "permission denied (listing the directory)"}
    assert files.timezone == "Asia/Seoul"


def test_parse_output_says_when_the_output_was_cut_short() -> None:
    files, complete = ssh.parse_output(f"{MARK} F /etc/crontab\n0 1 * * * a\n".encode(), MARK)
    assert not complete and files.files == {}


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("web1", ssh.Target("web1")),
        ("deploy@web1", ssh.Target("web1", user="deploy")),
        ("web1:2222", ssh.Target("web1:2222", address="web1", port=2222)),
        ("ops@[::1]:2200", ssh.Target("::1:2200", address="::1", port=2200, user="ops")),
    ],
)
def test_hosts_are_written_user_at_host_colon_port(text: str, target: ssh.Target) -> None:
    assert ssh.parse_target(text) == target


def test_a_bad_port_is_refused_with_the_value() -> None:
    with pytest.raises(collect.DiscoverError, match="port 70000 is out of range"):
        ssh.parse_target("web1:70000")


def test_a_hosts_file_has_one_host_per_line_and_comments(tmp_path: Path) -> None:
    path = tmp_path / "hosts.txt"
    path.write_text("# the fleet\nweb1\n\nbatch@batch1:2200  # old box\n")
    assert ssh.read_hosts_file(path) == [
        ssh.Target("web1"),
        ssh.Target("batch1:2200", address="batch1", port=2200, user="batch"),
    ]


def test_an_ini_ansible_inventory_gives_hosts_with_their_connection_vars(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text(
        """
[web]
web[01:02].example.com
legacy ansible_host=10.0.0.9 ansible_port=2222 ansible_user=admin

[batch]
batch1 ansible_host=10.0.1.1

[batch:vars]
ansible_user=batch

[prod:children]
web
batch

[prod:vars]
ansible_port=2200

[all:vars]
ansible_user=ops
"""
    )
    assert ssh.read_ansible_inventory(path) == [
        ssh.Target("web01.example.com", port=2200, user="ops"),
        ssh.Target("web02.example.com", port=2200, user="ops"),
        ssh.Target("legacy", address="10.0.0.9", port=2222, user="admin"),
        ssh.Target("batch1", address="10.0.1.1", port=2200, user="batch"),
    ]


def test_a_yaml_ansible_inventory_gives_hosts_with_their_connection_vars(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yml"
    path.write_text(
        """
all:
  vars:
    ansible_user: ops
  hosts:
    solo:
  children:
    web:
      vars:
        ansible_port: 2200
      hosts:
        web1:
          ansible_host: 10.0.0.1
        web2:
          ansible_host: 10.0.0.2
          ansible_user: deploy
"""
    )
    assert ssh.read_ansible_inventory(path) == [
        ssh.Target("solo", user="ops"),
        ssh.Target("web1", address="10.0.0.1", port=2200, user="ops"),
        ssh.Target("web2", address="10.0.0.2", port=2200, user="deploy"),
    ]


def test_an_unreadable_host_list_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(collect.DiscoverError, match="cannot read .*missing"):
        ssh.read_hosts_file(tmp_path / "missing")
