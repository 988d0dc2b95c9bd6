"""Presence from Mosquitto's connect/disconnect notices (lines as Mosquitto 2.0 prints them)."""

from wulian.access.presence import Presence, PresenceParser, format_remote


def parser() -> PresenceParser:
    return PresenceParser(lambda user: user.startswith("dev"))


def test_connect_with_username_over_ipv6_then_disconnect() -> None:
    p = parser()
    line = "1795556731: New client connected from ::1:42392 as c-17 (p2, c1, k60, u'dev1')."
    assert p.feed(line) == Presence("dev1", True, "[::1]:42392")
    assert p.feed("1795556731: Client c-17 disconnected.") == Presence("dev1", False, None)
    assert p.feed("1795556731: Client c-17 disconnected.") is None  # already gone


def test_ipv4_and_timeouts() -> None:
    p = parser()
    line = "1: New client connected from 127.0.0.1:51266 as dev2 (p2, c1, k60, u'dev2')."
    assert p.feed(line) == Presence("dev2", True, "127.0.0.1:51266")
    gone = p.feed("2: Client dev2 has exceeded timeout, disconnecting.")
    assert gone == Presence("dev2", False, None)


def test_non_devices_and_other_lines_are_ignored() -> None:
    p = parser()
    platform = "1: New client connected from 127.0.0.1:1 as wulian-ingest-0 (p5, c0, k60, " \
               "u'wulian-platform')."
    assert p.feed(platform) is None
    assert p.feed("1: New connection from 127.0.0.1:51266 on port 1883.") is None
    assert p.feed("1: Client wulian-ingest-0 disconnected.") is None
    assert p.feed("garbage \x00 line") is None


def test_format_remote() -> None:
    assert format_remote("10.0.0.1", 5) == "10.0.0.1:5"
    assert format_remote("fe80::1", "7") == "[fe80::1]:7"
    assert format_remote("::ffff:10.1.2.3", 9) == "10.1.2.3:9"  # an IPv4 peer, dual stack


def test_at_its_cap_the_parser_forgets_only_the_longest_connected_client() -> None:
    p = PresenceParser(lambda user: user.startswith("dev"), max_clients=2)

    def connect(n: int) -> None:
        line = f"1: New client connected from 10.0.0.{n}:1 as c{n} (p2, c1, k60, u'dev{n}')."
        assert p.feed(line) == Presence(f"dev{n}", True, f"10.0.0.{n}:1")

    connect(1)
    connect(2)
    connect(3)  # over the cap: dev1, the longest connected, is forgotten; not everyone
    connect(2)  # reconnected: now the most recent
    connect(4)  # so dev3 goes next
    assert p.feed("2: Client c1 disconnected.") is None
    assert p.feed("2: Client c3 disconnected.") is None
    assert p.feed("2: Client c2 disconnected.") == Presence("dev2", False, None)
    assert p.feed("2: Client c4 disconnected.") == Presence("dev4", False, None)
