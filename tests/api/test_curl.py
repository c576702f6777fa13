"""The curl examples of the JSMS documents (reference seeds 002 and 003), run with the real
curl binary against a running gateway: only the host, the credentials and the placeholders
the documents leave to the reader (a mobile number, a template or message id) are changed."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass

import pytest

from gateway.api import templates_signs
from tests.aio import eventually, run
from tests.api_stack import KEY, SECRET, new_sign, operator, stack, status_becomes

pytestmark = pytest.mark.usefixtures("api_store")

DOC_HOST = "https://api.sms.jpush.cn"
DOC_CREDENTIALS = "7d431e42dfa6a6d693ac2d04:5e987ac6d2e04d95a9d8f0d1"

CONFIG = """
[gateway]
store = "@STORE@"
[channels.cmcc]
provider = "default"
host = "127.0.0.1"
port = @PORT@
account = "900001"
password = "secret"
access_number = "10690001"
connections = 1
[api]
@API@
[apps.jsms]
app_key = "@KEY@"
master_secret = "@SECRET@"
signature = "极光"
[templates.1]
type = "notification"
content = "您的订单{{xxxx}}已发货"
[templates.2]
type = "code"
content = "验证码{{code}}"
[templates.1250]
type = "notification"
content = "您的取件码{{number}}"
"""

# ----------------------------------------------------------------------------- the examples
# Copied from the documents as they are, line breaks and all.

CODES = """curl --insecure -X POST -v https://api.sms.jpush.cn/v1/codes -H "Content-Type: application/json" \\
-u "7d431e42dfa6a6d693ac2d04:5e987ac6d2e04d95a9d8f0d1" -d '{"mobile":"xxxxxxxxxxx","temp_id":*}'"""

VOICE_CODES = """curl --insecure -X POST -v https://api.sms.jpush.cn/v1/voice_codes -H "Content-Type: application/json" \\
-u "7d431e42dfa6a6d693ac2d04:5e987ac6d2e04d95a9d8f0d1" -d '{"mobile":"xxxxxxxxxxxxxx", "ttl":60}'"""

VALID = """curl --insecure -X POST -v https://api.sms.jpush.cn/v1/codes/288193860302/valid -H "Content-Type: application/json" \\
-u "7d431e42dfa6a6d693ac2d04:5e987ac6d2e04d95a9d8f0d1" -d '{"code":"123456"}'"""

MESSAGES = """curl --insecure -X POST -v https://api.sms.jpush.cn/v1/messages -H "Content-Type: application/json" -u "7d431e42dfa6a6d693ac2d04:5e987ac6d2e04d95a9d8f0d1" \\
-d '{"mobile":"xxxxxxxxxxxxxx","temp_id":1,"temp_para":{"xxxx":"xxxx"}}'"""

BATCH = """curl --insecure -X POST -v https://api.sms.jpush.cn/v1/messages/batch -H "Content-Type: application/json" -u "7d431e42dfa6a6d693ac2d04:5e987ac6d2e04d95a9d8f0d1" -d \\
'{
"temp_id": 1250,
"recipients": [
{
"mobile": "13812345678",
"temp_para": {
"number": "741627"
}
},
{
"mobile": "18603050709",
"temp_para": {
"number": "147721"
}
}
]
}'"""

CREATE_SIGN = """curl -X POST \\
  https://api.sms.jpush.cn/v1/sign \\
  -u '7d431e42dfa6a6d693ac2d04:5e987ac6d2e04d95a9d8f0d1' \\
  -H 'content-type: multipart/form-data;' \\
  -F 'sign=申请的签名'"""

MODIFY_SIGN = """curl -X POST \\
  https://api.sms.jpush.cn/v1/sign/37582 \\
  -u '7d431e42dfa6a6d693ac2d04:5e987ac6d2e04d95a9d8f0d1' \\
  -H 'content-type: multipart/form-data;' \\
  -F 'sign=修改的签名'"""

QUERY_SIGN = """curl --insecure -X GET -v https://api.sms.jpush.cn/v1/sign/37582 -H "Content-Type: application/json" -u "7d431e42dfa6a6d693ac2d04:5e987ac6d2e04d95a9d8f0d1\""""

DELETE_SIGN = """curl --insecure -X DELETE -v https://api.sms.jpush.cn/v1/sign/37582 -H "Content-Type: application/json" -u "7d431e42dfa6a6d693ac2d04:5e987ac6d2e04d95a9d8f0d1\""""


@pytest.fixture(autouse=True)
def quick_reviews(monkeypatch):
    """The gateway re-reads review statuses every 50 ms instead of every 2 s."""
    monkeypatch.setattr(templates_signs, "REVIEW_POLL", 0.05)


def curl_binary() -> str:
    """The curl binary; the test fails (never skips) without it."""
    path = shutil.which("curl")
    if path is None:
        pytest.fail("curl is not installed: these tests run the JSMS documents' curl examples "
                    "with the real binary; install curl (CI does: apt-get install curl)")
    return path


@dataclass
class Answer:
    status: int | None            # from the -v trace; None when the example has no -v
    headers: dict[str, str]       # likewise
    text: str

    @property
    def json(self):
        return json.loads(self.text)


async def curl(example: str, base: str, replacements: dict[str, str] | None = None) -> Answer:
    """Run a documented example against ``base`` with the test app's credentials and the
    given placeholders replaced."""
    binary = curl_binary()
    command = example.replace(DOC_HOST, base).replace(DOC_CREDENTIALS, f"{KEY}:{SECRET}")
    for placeholder, value in (replacements or {}).items():
        assert placeholder in command, placeholder
        command = command.replace(placeholder, value)
    argv = shlex.split(command.replace("\\\n", " "))
    assert argv[0] == "curl"
    process = await asyncio.create_subprocess_exec(
        binary, *argv[1:], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    out, err = await process.communicate()
    trace = err.decode("utf-8", "replace")
    assert process.returncode == 0, trace
    status = re.search(r"^< HTTP/[\d.]+ (\d{3})", trace, re.M)
    headers = dict(re.findall(r"^< ([A-Za-z-]+): (.*?)\r?$", trace, re.M))
    return Answer(int(status[1]) if status else None, headers, out.decode("utf-8"))


def jsms_stack(tmp_path, api: str = ""):
    return stack(tmp_path, api=api, config=CONFIG)


# ----------------------------------------------------------------------------- 002: sending

def test_curl_sends_a_verification_code_and_verifies_it(tmp_path):
    curl_binary()

    async def scenario():
        async with jsms_stack(tmp_path) as s:
            sent = await curl(CODES, s.api.base, {
                '"mobile":"xxxxxxxxxxx"': '"mobile":"13800138000"', '"temp_id":*': '"temp_id":2'})
            assert sent.status == 200 and set(sent.json) == {"msg_id"}
            msg_id = sent.json["msg_id"]
            assert isinstance(msg_id, str) and msg_id.isdigit()     # {"msg_id": "288193860302"}
            await eventually(lambda: s.sim.submits)
            code = s.sim.submits[0].submit.msg_content.decode("utf-16-be").removeprefix("【极光】验证码")
            wrong = await curl(VALID, s.api.base, {"288193860302": msg_id,
                                                   '"code":"123456"': f'"code":"{_other(code)}"'})
            assert wrong.status == 403 and wrong.json["is_valid"] is False
            assert set(wrong.json["error"]) == {"code", "message"}
            assert wrong.json["error"]["code"] == 50010
            passed = await curl(VALID, s.api.base, {"288193860302": msg_id,
                                                    '"code":"123456"': f'"code":"{code}"'})
            assert (passed.status, passed.json) == (200, {"is_valid": True})
    run(scenario)


def _other(code: str) -> str:
    return str((int(code) + 1) % 10 ** len(code)).zfill(len(code))


def test_curl_voice_code_is_refused_with_the_documented_error_shape(tmp_path):
    curl_binary()

    async def scenario():
        async with jsms_stack(tmp_path) as s:
            answer = await curl(VOICE_CODES, s.api.base,
                                {'"mobile":"xxxxxxxxxxxxxx"': '"mobile":"13800138000"'})
            assert answer.status == 403 and set(answer.json) == {"error"}
            assert answer.json["error"]["code"] == 50008
            assert "voice" in answer.json["error"]["detail"]
            assert s.sim.submits == []
    run(scenario)


def test_curl_sends_a_single_template_sms(tmp_path):
    curl_binary()

    async def scenario():
        async with jsms_stack(tmp_path) as s:
            answer = await curl(MESSAGES, s.api.base,
                                {'"mobile":"xxxxxxxxxxxxxx"': '"mobile":"13800138000"'})
            assert answer.status == 200 and set(answer.json) == {"msg_id"}
            assert isinstance(answer.json["msg_id"], int)                 # {"msg_id": 288193860302}
            await eventually(lambda: s.sim.submits)
            assert s.sim.submits[0].submit.msg_content.decode("utf-16-be") == "【极光】您的订单xxxx已发货"
    run(scenario)


def test_curl_sends_a_batch_of_template_sms(tmp_path):
    curl_binary()

    async def scenario():
        async with jsms_stack(tmp_path) as s:
            answer = await curl(BATCH, s.api.base)
            assert answer.status == 200
            body = answer.json
            assert (body["success_count"], body["failure_count"]) == (2, 0)
            assert [r["mobile"] for r in body["recipients"]] == ["13812345678", "18603050709"]
            assert all(set(r) == {"msg_id", "mobile"} and r["msg_id"].isdigit()
                       for r in body["recipients"])
            await eventually(lambda: len(s.sim.submits) == 2)
            texts = sorted(x.submit.msg_content.decode("utf-16-be") for x in s.sim.submits)
            assert texts == ["【极光】您的取件码147721", "【极光】您的取件码741627"]
    run(scenario)


# ----------------------------------------------------------------------------- 003: signatures

def test_curl_creates_a_signature(tmp_path):
    curl_binary()

    async def scenario():
        async with jsms_stack(tmp_path) as s:
            answer = await curl(CREATE_SIGN, s.api.base)
            assert set(answer.json) == {"sign_id"} and isinstance(answer.json["sign_id"], int)
            rows = await s.gateway.store.signatures()
            assert rows == [{"id": answer.json["sign_id"], "app": "jsms", "sign": "申请的签名",
                             "status": 0, "type": None, "remark": None}]
    run(scenario)


@pytest.mark.parametrize("method", ["POST", "PUT"])      # the example's, and the Call Address's
def test_curl_modifies_a_signature(tmp_path, method):
    curl_binary()

    async def scenario():
        async with jsms_stack(tmp_path) as s:
            sign_id = await new_sign(s.api, "申请的签名")
            assert await operator(s, "sign", sign_id, "reject") == 0       # failed the audit
            await status_becomes(s.api, f"/v1/sign/{sign_id}", 2)
            example = MODIFY_SIGN.replace("-X POST", f"-X {method}")
            answer = await curl(example, s.api.base, {"37582": str(sign_id)})
            assert answer.json == {"sign_id": sign_id}
            view = (await s.api.call("GET", f"/v1/sign/{sign_id}"))[1]
            assert (view["sign"], view["status"]) == ("修改的签名", 0)       # audited again
    run(scenario)


def test_curl_queries_a_signature(tmp_path):
    curl_binary()

    async def scenario():
        async with jsms_stack(tmp_path) as s:
            sign_id = await new_sign(s.api, "极光推送")
            assert await operator(s, "sign", sign_id, "approve") == 0
            await status_becomes(s.api, f"/v1/sign/{sign_id}", 1)
            answer = await curl(QUERY_SIGN, s.api.base, {"37582": str(sign_id)})
            assert answer.status == 200
            assert answer.json == {"sign_id": sign_id, "sign": "极光推送", "status": 1,
                                   "use_status": 0}
    run(scenario)


def test_curl_deletes_a_signature(tmp_path):
    curl_binary()

    async def scenario():
        async with jsms_stack(tmp_path) as s:
            sign_id = await new_sign(s.api, "极光推送")
            answer = await curl(DELETE_SIGN, s.api.base, {"37582": str(sign_id)})
            assert (answer.status, answer.text) == (200, "")
            assert answer.headers["Content-Length"] == "0"
            assert answer.headers["Content-Type"].startswith("application/json")
            assert await s.gateway.store.signatures() == []
            again = await curl(DELETE_SIGN, s.api.base, {"37582": str(sign_id)})
            assert again.status == 403 and again.json["error"]["code"] == 50102
    run(scenario)


def test_curl_sees_the_documented_failure_shape_for_a_signature(tmp_path):
    curl_binary()

    async def scenario():
        async with jsms_stack(tmp_path) as s:
            answer = await curl(CREATE_SIGN, s.api.base, {"sign=申请的签名": "sign=【申请的签名】"})
            assert set(answer.json) == {"error"}
            assert set(answer.json["error"]) == {"code", "message", "detail"}  # detail: ours
            assert answer.json["error"]["code"] == 50104
            assert answer.json["error"]["message"] == "invalid signature"
            assert await s.gateway.store.signatures() == []
    run(scenario)
