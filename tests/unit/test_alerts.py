"""Alert rules, settings, content and each channel's payload, without any network."""

from __future__ import annotations

import json
from email import message_from_bytes, policy
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from skyline.alerting.alertmanager import build_alerts
from skyline.alerting.content import Alert, mrkdwn_code
from skyline.alerting.pagerduty import build_event, dedup_key
from skyline.alerting.slack import build_payload
from skyline.alerting.smtp import build_message
from skyline.alerting.syslog import format_message
from skyline.alerting.webhook import build_body, signature
from skyline.cli.main import cli
from skyline.core.errors import SettingsError
from skyline.core.events import AlgorithmResult, AnomalyEvent
from skyline.services.alerters.delivery import retry_delay
from skyline.services.alerters.routing import Router
from skyline.settings import load_settings
from skyline.settings.alerts import AlertRule
from tests.alertsinks import parse_rfc5424, validate_pagerduty, validate_slack

NASTY = 'web.<script>alert(1)</script>.*bold*_it_~s~`code`&amp;<!channel>"q"]\\.cpu'


@pytest.fixture(autouse=True)
def _clean_env(clean_env: None) -> None:
    """No SKYLINE_* variable of the developer's shell leaks into these tests."""


def event(metric: str = "web.host1.cpu", status: str = "anomalous", **kw: object) -> AnomalyEvent:
    t = np.arange(0.0, 3600.0, 60.0) + 1.8e9
    v = np.sin(t / 300.0)
    v[-1] = 9.0
    args: dict = {"metric": metric, "timestamp": float(t[-1]), "value": 9.0, "score": 0.83,
                  "source": "analyzer", "window_timestamps": t, "window_values": v,
                  "status": status, "triggered": ("grubbs", "histogram_bins"),
                  "results": (AlgorithmResult("grubbs", True, 5.1, 3.2, "Grubbs G 5.1 > 3.2"),
                              AlgorithmResult("histogram_bins", True, 1, 5,
                                              "value in a bin of 1 < 5 <points>"),
                              AlgorithmResult("ks_test", False, 0.3, 0.05, "not different"))}
    args.update(kw)
    return AnomalyEvent.build(**args)  # type: ignore[arg-type]


def alert(metric: str = "web.host1.cpu", kind: str = "alert", **kw: object) -> Alert:
    status = "recovered" if kind == "resolve" else "anomalous"
    return Alert(event=event(metric, status=status), kind=kind,
                 link="https://sky.example.com/anomalies/abc", **kw)  # type: ignore[arg-type]


# routing ----------------------------------------------------------------------------------
def rules(*specs: tuple[str, str, int]) -> list[AlertRule]:
    return [AlertRule(pattern=p, channel=c, expiration=e) for p, c, e in specs]


def test_every_channel_fires_once_with_its_first_matching_rule() -> None:
    r = Router(rules(("web.critical.**", "pagerduty", 600), ("web.**", "slack", 3600),
                     ("web.critical.**", "slack", 60), ("**", "syslog", 1)),
               {"pagerduty", "slack", "syslog"})
    routes = r.routes("web.critical.db.latency")
    assert [(x.channel, x.rule, x.expiration) for x in routes] == [
        ("pagerduty", 0, 600), ("slack", 1, 3600), ("syslog", 3, 1)]
    assert [x.channel for x in r.routes("web.api.rpm")] == ["slack", "syslog"]
    assert [x.channel for x in r.routes("db.rpm")] == ["syslog"]


def test_rules_of_disabled_channels_are_not_routed() -> None:
    r = Router(rules(("**", "smtp", 60), ("**", "slack", 60)), {"slack"})
    assert [x.channel for x in r.routes("a.b")] == ["slack"]


def test_regex_rules() -> None:
    r = Router(rules(("re:^stats\\.(web|api)\\.", "webhook", 60)), {"webhook"})
    assert r.routes("stats.web.rpm") and not r.routes("stats.db.rpm")


# settings ----------------------------------------------------------------------------------
def _problems(**kw: object) -> list[str]:
    with pytest.raises(SettingsError) as info:
        load_settings(**kw)
    return [p.line() for p in info.value.problems]


def test_an_unknown_channel_names_the_rule() -> None:
    lines = _problems(ALERTS=[{"pattern": "a.**", "channel": "slack"},
                              {"pattern": "b.**", "channel": "hipchat"}],
                      alerters={"slack": {"enabled": True,
                                          "webhook_url": "https://hooks.example.com/x"}})
    assert any(line.startswith("ALERTS.1.channel: 'hipchat'") and "webhook" in line
               for line in lines), lines


def test_a_rule_on_a_disabled_channel_names_the_rule() -> None:
    lines = _problems(ALERTS=[{"pattern": "a.**", "channel": "pagerduty"}])
    assert lines == [
        "ALERTS.0.channel: 'pagerduty': ALERTS.0.channel of rule 1 (pattern 'a.**') names "
        "channel pagerduty, which is not enabled (set alerters.pagerduty.enabled = true)"]


@pytest.mark.parametrize(("rule", "needle"), [
    ({"pattern": "re:(", "channel": "syslog"}, "invalid regular expression"),
    ({"pattern": "a", "channel": "syslog", "options": {"recipients": ["x@y.z"]}},
     "not options of channel syslog"),
    ({"pattern": "a", "channel": "syslog", "options": {"severity": "loud"}},
     "options.severity"),
    ({"pattern": "a", "channel": "syslog", "expiration": -1}, "greater than or equal"),
])
def test_bad_rules_are_refused(rule: dict, needle: str) -> None:
    lines = _problems(ALERTS=[rule], alerters={"syslog": {"enabled": True}})
    assert any(line.startswith("ALERTS.0") and needle in line for line in lines), lines


def test_an_enabled_channel_without_its_endpoint_is_refused() -> None:
    lines = _problems(alerters={"slack": {"enabled": True}})
    assert any("alerters.slack.webhook_url must be set" in line for line in lines), lines
    lines = _problems(alerters={"syslog": {"enabled": True, "address": "udp://host"}})
    assert any(line.startswith("alerters.syslog.address") for line in lines), lines


def test_smtp_rules_need_recipients() -> None:
    lines = _problems(ALERTS=[{"pattern": "a", "channel": "smtp"}],
                      alerters={"smtp": {"enabled": True}})
    assert any("has no recipients" in line for line in lines), lines
    s = load_settings(ALERTS=[{"pattern": "a", "channel": "smtp",
                               "options": {"recipients": ["ops@example.com"]}}],
                      alerters={"smtp": {"enabled": True}})
    assert s.ALERTS[0].options["recipients"] == ["ops@example.com"]


def test_config_check_fails_naming_the_rule(tmp_path: Path) -> None:
    cfg = tmp_path / "skyline.toml"
    cfg.write_text('[[ALERTS]]\npattern = "web.**"\nchannel = "syslog"\n\n'
                   '[[ALERTS]]\npattern = "db.**"\nchannel = "hipchat"\nexpiration = 60\n\n'
                   '[alerters.syslog]\nenabled = true\n')
    result = CliRunner().invoke(cli, ["--config", str(cfg), "config", "check"])
    assert result.exit_code == 1
    assert "ALERTS.1.channel: 'hipchat'" in result.output


def test_config_show_masks_channel_secrets_and_round_trips(tmp_path: Path) -> None:
    cfg = tmp_path / "skyline.toml"
    cfg.write_text(
        '[[ALERTS]]\npattern = "web.**"\nchannel = "alertmanager"\n'
        'options = { labels = { team = "web" } }\n\n'
        '[alerters.slack]\nenabled = true\n'
        'webhook_url = "https://hooks.slack.com/services/T0/B0/TOPSECRET"\n\n'
        '[alerters.alertmanager]\nenabled = true\nurl = "http://127.0.0.1:9093"\n'
        'labels = { env = "prod" }\n')
    result = CliRunner().invoke(cli, ["--config", str(cfg), "config", "show"])
    assert result.exit_code == 0, result.output
    assert "TOPSECRET" not in result.output
    assert "[alerters.alertmanager]" in result.output
    # without the masked secret the shown settings load again, unchanged
    shown = tmp_path / "shown.toml"
    shown.write_text(result.output.replace('webhook_url = "***"',
                                           'webhook_url = "https://h.example.com/x"'))
    again = load_settings(shown)
    assert again.ALERTS == load_settings(cfg).ALERTS
    assert again.alerters.alertmanager.labels == {"env": "prod"}


# content and escaping ----------------------------------------------------------------------------
def test_the_alert_names_the_algorithms_that_fired_with_their_explanations() -> None:
    a = alert()
    assert a.algorithms() == [("grubbs", "Grubbs G 5.1 > 3.2"),
                              ("histogram_bins", "value in a bin of 1 < 5 <points>")]
    facts = dict(a.facts())
    assert facts["metric"] == "web.host1.cpu" and facts["value"] == "9"
    assert facts["score"] == "0.830"


def test_slack_payload_keeps_block_kit_limits_and_escapes() -> None:
    long_metric = NASTY + ".x" * 2000
    payload = build_payload(alert(long_metric), "https://sky.example.com/g.png")
    assert validate_slack("/", {}, json.dumps(payload).encode()) is None
    text = json.dumps(payload)
    assert "<script>" not in text and "<!channel>" not in text
    fields = payload["blocks"][1]["fields"]
    metric_field = fields[0]["text"]
    # inside a code span Slack applies no formatting; the backtick cannot end it early
    assert metric_field.startswith("*metric*\n`") and metric_field.count("`") <= 2


def test_mrkdwn_code_keeps_the_name_visible() -> None:
    assert mrkdwn_code("a*b_c`d<e>&") == "`a*b_c\u02cbd&lt;e&gt;&amp;`"


def test_pagerduty_trigger_and_resolve_keep_documented_limits() -> None:
    key = "k" * 32
    long_metric = NASTY + ".y" * 1500
    trig = build_event(alert(long_metric), key, "error")
    assert validate_pagerduty("/v2/enqueue", {}, json.dumps(trig).encode()) is None
    assert len(trig["payload"]["summary"]) <= 1024 and len(trig["dedup_key"]) <= 255
    res = build_event(alert(long_metric, kind="resolve"), key, "error")
    assert res["event_action"] == "resolve" and res["dedup_key"] == trig["dedup_key"]
    assert validate_pagerduty("/v2/enqueue", {}, json.dumps(res).encode()) is None
    assert dedup_key("a.b") == "skyline/a.b"
    assert dedup_key("x" * 300) != dedup_key("x" * 299 + "y")


def test_alertmanager_alert_and_resolution() -> None:
    fire = build_alerts(alert(NASTY, expiration=600), {"env": "prod"}, now=2e9)[0]
    assert fire["labels"] == {"env": "prod", "alertname": "SkylineAnomaly", "metric": NASTY}
    assert fire["startsAt"] < fire["endsAt"]
    assert fire["annotations"]["description"].startswith("grubbs: Grubbs G 5.1")
    done = build_alerts(alert(NASTY, kind="resolve"), {"env": "prod"}, now=2e9)[0]
    assert done["labels"] == fire["labels"] and "startsAt" not in done


def test_webhook_body_and_signature() -> None:
    body = build_body(alert(NASTY), include_graph=False)
    data = json.loads(body)
    assert data["alert"]["metric"] == NASTY and data["alert"]["kind"] == "alert"
    sig = signature("s3cret", body, 1_800_000_000)
    assert sig.startswith("sha256=") and len(sig) == 71
    # the timestamp is signed: the same body later is another signature (no replay)
    assert signature("s3cret", body, 1_800_000_301) != sig


def test_syslog_message_is_rfc5424_with_escaped_structured_data() -> None:
    s = load_settings(alerters={"syslog": {"enabled": True, "facility": "local4",
                                           "severity": "warning"}})
    msg = parse_rfc5424(format_message(alert(NASTY), s.alerters.syslog, hostname="h 1"))
    assert (msg["facility"], msg["severity"]) == (20, 4)
    assert msg["hostname"] == "h_1" and msg["app"] == "skyline" and msg["msgid"] == "anomaly"
    assert msg["sd_id"] == "skyline@32473"
    assert msg["params"]["metric"] == NASTY
    assert msg["bom"] and NASTY in msg["msg"]
    rec = parse_rfc5424(format_message(alert(kind="resolve"), s.alerters.syslog))
    assert rec["severity"] == 5 and rec["msgid"] == "recovered"


def test_smtp_message_structure_and_escaping() -> None:
    s = load_settings(alerters={"smtp": {"enabled": True, "recipients": ["ops@example.com"]}})
    png = b"\x89PNG\r\n\x1a\nfake"
    msg = build_message(alert(NASTY, graph=png), s.alerters.smtp, ["ops@example.com"])
    parsed = message_from_bytes(msg.as_bytes(), policy=policy.default)
    assert parsed.get_content_type() == "multipart/alternative"
    plain, related = parsed.get_payload()
    assert plain.get_content_type() == "text/plain"
    assert related.get_content_type() == "multipart/related"
    html_part, image = related.get_payload()
    html = html_part.get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html
    cid = image["Content-ID"].strip("<>")
    assert f'src="cid:{cid}"' in html
    assert image.get_content() == png
    assert "\n" not in parsed["Subject"]


def test_retry_delays_double_up_to_the_maximum() -> None:
    assert [retry_delay(n, 5, 60) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]


# alerts per incident (rules with group = "incident") ------------------------------------------
def incident(members: list[str], **kw: object) -> dict:
    body = {"incident": "inc0123456789abcdef", "change": "joined", "metric": members[-1],
            "origin": members[0], "started": 1.8e9, "ended": None, "members": members,
            "open_members": len(members)}
    body.update(kw)
    return body


def test_a_rule_groups_per_metric_or_per_incident() -> None:
    assert AlertRule(pattern="**", channel="slack").group == "metric"
    rule = AlertRule(pattern="**", channel="slack", group="incident")
    [route] = Router([rule], ["slack"]).routes("a.b")
    assert route.group == "incident"
    with pytest.raises(ValueError, match="group"):
        AlertRule(pattern="**", channel="slack", group="outage")


def test_incident_alerts_on_every_channel_keep_limits_and_escape() -> None:
    members = [NASTY + f".m{i}" for i in range(60)]
    first = alert(NASTY, incident=incident(members[:1], change="opened"))
    update = alert(NASTY, kind="update", incident=incident(members))
    over = alert(NASTY, kind="resolve", incident=incident(members, ended=1.8e9 + 600,
                                                          open_members=0))
    assert first.title().startswith("Skyline incident: ") and "(1 metric)" in first.title()
    assert update.title() == (f"Skyline incident update: 60 metrics, 60 still anomalous "
                              f"(origin {members[0]})")
    assert over.title().startswith(f"Skyline: incident of {members[0]} over (60 metrics)")
    facts = dict(update.facts())
    assert facts["incident"] == "inc0123456789abcdef"
    assert facts["members (60, 60 open)"].endswith(" and 30 more")
    for a in (first, update, over):
        payload = build_payload(a, None)
        assert validate_slack("/", {}, json.dumps(payload).encode()) is None
        assert "<script>" not in json.dumps(payload) and "<!channel>" not in json.dumps(payload)
        ev = build_event(a, "k" * 32, "error")
        assert validate_pagerduty("/v2/enqueue", {}, json.dumps(ev).encode()) is None
        assert ev["dedup_key"] == "skyline-incident/inc0123456789abcdef"
        labels = build_alerts(a, {}, now=2e9)[0]["labels"]
        assert labels == {"alertname": "SkylineIncident", "incident": "inc0123456789abcdef"}
        data = json.loads(build_body(a, include_graph=False))["alert"]
        assert data["incident"]["members"] == ([members[0]] if a is first else members)
    assert build_event(update, "k" * 32, "error")["event_action"] == "trigger"
    assert build_event(over, "k" * 32, "error")["event_action"] == "resolve"
    s = load_settings(alerters={"syslog": {"enabled": True},
                                "smtp": {"enabled": True, "recipients": ["ops@example.com"]}})
    msg = parse_rfc5424(format_message(update, s.alerters.syslog))
    assert msg["msgid"] == "update" and msg["params"]["incident"] == "inc0123456789abcdef"
    mail = build_message(update, s.alerters.smtp, ["ops@example.com"])
    parsed = message_from_bytes(mail.as_bytes(), policy=policy.default)
    assert "\n" not in parsed["Subject"] and "Skyline incident update" in parsed["Subject"]
    assert "See this incident in Skyline" in parsed.get_body(("html",)).get_content()
