"""Banks a virtual-account refund can be paid into, and the customer's refund account.

One table: PortOne's bank code (the 금융결제원 standard code, as PortOne's V1 docs write it: "신한은행은
88번", opi/ko/integration/cancel/v1/basic.md; the KG이니시스 column of opi/ko/support/code-info/pg-1.md)
-> Korean name, English name, and V2's `Bank` enum value (schema/v2.openapi.json
components.schemas.Bank). It validates what operators enter and fills the dashboard's picker.

V1 passes `refund_bank` on to the PG, and the PGs write the same bank differently
(opi/ko/support/code-info/pg-1.md): NHN KCP `BK88`, 토스페이먼츠/다날/나이스/KICC/스마트로/헥토 `088`,
키움페이 its own numbers. `v1_bank_code` turns our code into the one the payment's PG takes.

An account number is personal data: only `RefundAccount.masked_number` is ever stored, logged or
shown; the full number lives in memory for the one cancel call that needs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.core.errors import InvalidRequest
from services.core.masking import mask_account_number


@dataclass(frozen=True)
class Bank:
    code: str  # PortOne's (금융결제원 standard) code
    name_ko: str
    name_en: str
    v2: str  # PortOne V2 `Bank` enum value


BANKS: tuple[Bank, ...] = (
    Bank("04", "KB국민은행", "KB Kookmin Bank", "KOOKMIN"),
    Bank("88", "신한은행", "Shinhan Bank", "SHINHAN"),
    Bank("20", "우리은행", "Woori Bank", "WOORI"),
    Bank("81", "하나은행", "Hana Bank", "HANA"),
    Bank("11", "NH농협은행", "NH NongHyup Bank", "NONGHYUP"),
    Bank("03", "IBK기업은행", "IBK Industrial Bank of Korea", "IBK"),
    Bank("90", "카카오뱅크", "KakaoBank", "KAKAO"),
    Bank("92", "토스뱅크", "Toss Bank", "TOSS"),
    Bank("89", "케이뱅크", "K Bank", "K_BANK"),
    Bank("23", "SC제일은행", "SC First Bank", "STANDARD_CHARTERED"),
    Bank("27", "한국씨티은행", "Citibank Korea", "CITI"),
    Bank("02", "KDB산업은행", "Korea Development Bank", "KDB"),
    Bank("07", "수협은행", "Suhyup Bank", "SUHYUP"),
    Bank("12", "지역농축협", "Local NongHyup / livestock cooperatives", "LOCAL_NONGHYUP"),
    Bank("31", "아이엠뱅크(대구은행)", "iM Bank (Daegu Bank)", "DAEGU"),
    Bank("32", "부산은행", "Busan Bank", "BUSAN"),
    Bank("34", "광주은행", "Kwangju Bank", "KWANGJU"),
    Bank("37", "전북은행", "Jeonbuk Bank", "JEONBUK"),
    Bank("39", "경남은행", "Kyongnam Bank", "KYONGNAM"),
    Bank("45", "새마을금고", "MG Saemaeul Geumgo", "KFCC"),
    Bank("48", "신협", "Shinhyup (credit unions)", "SHINHYUP"),
    Bank("71", "우체국", "Korea Post", "POST"),
)
BY_CODE: dict[str, Bank] = {bank.code: bank for bank in BANKS}

# opi/ko/support/code-info/pg-1.md, per PG: how `refund_bank` is written for it.
_KCP = frozenset({"kcp"})
_THREE_DIGITS = frozenset(
    {"tosspayments", "uplus", "danal", "danal_tpay", "nice", "nice_v2", "kicc", "smartro", "smartro_v2", "settle",
     "welcome"}
)  # fmt: skip
_KIWOOM = frozenset({"daou", "kiwoompay", "payjoa"})
_KIWOOM_CODES = {"04": "04", "23": "11", "03": "03", "11": "08", "32": "15", "88": "10", "20": "09", "71": "31"}
_KIWOOM_CODES["81"] = "12"  # 하나은행 (키움페이 lists 외환 `05` apart)

MAX_HOLDER_LENGTH = 50


BY_NAME: dict[str, Bank] = {name: b for b in BANKS for name in (b.name_ko, b.name_en.lower(), b.v2.lower())}


def bank(code: str) -> Bank:
    """A bank by PortOne's code (`88`), or by its Korean or English name or V2 value (a CSV typed by hand)."""
    text = (code or "").strip()
    found = BY_CODE.get(text) or BY_NAME.get(text) or BY_NAME.get(text.lower())
    if found is None:
        # The text is not echoed: an account number typed in the bank column is personal data.
        raise InvalidRequest("unknown bank code: use PortOne's bank codes (04 KB국민, 88 신한, ...) or a bank's name")
    return found


def v1_bank_code(code: str, pg_provider: str | None) -> str:
    """Our bank code written as the payment's PG takes it in V1's `refund_bank`."""
    pg = (pg_provider or "").strip().lower()
    if pg in _KCP:
        return f"BK{code}"
    if pg in _THREE_DIGITS:
        return f"0{code}"
    if pg in _KIWOOM:
        if code not in _KIWOOM_CODES:
            raise InvalidRequest(f"키움페이 cannot refund to {BY_CODE[code].name_ko}: choose another bank")
        return _KIWOOM_CODES[code]
    return code


@dataclass(frozen=True)
class RefundAccount:
    """The customer's account a virtual-account refund is paid into. `number` is the full number
    (digits only) and must never leave memory except in the cancel request to PortOne."""

    bank: str
    holder: str
    number: str = field(repr=False)

    @property
    def masked_number(self) -> str:
        return mask_account_number(self.number) or ""

    @property
    def bank_info(self) -> Bank:
        return BY_CODE[self.bank]

    def described(self) -> str:
        """For people and logs: bank, holder, masked number."""
        return f"{self.bank_info.name_ko} {self.masked_number} ({self.holder})"


def refund_account(value: object) -> RefundAccount | None:
    """A RefundAccount from `{bank, holder, number}` (or one already made); None for None.
    Raises InvalidRequest naming what is wrong, never echoing the number."""
    if value is None or isinstance(value, RefundAccount):
        return value
    if not isinstance(value, dict):
        raise InvalidRequest("refund_account must be an object {bank, holder, number}")
    missing = [name for name in ("bank", "holder", "number") if not str(value.get(name) or "").strip()]
    if missing:
        raise InvalidRequest(f"refund_account needs {', '.join(missing)}")
    code = bank(str(value["bank"])).code
    holder = str(value["holder"]).strip()
    if len(holder) > MAX_HOLDER_LENGTH or any(ord(c) < 32 for c in holder):
        raise InvalidRequest(f"refund_account.holder must be a name of at most {MAX_HOLDER_LENGTH} characters")
    raw = str(value["number"]).strip()
    digits = raw.replace("-", "").replace(" ", "")
    if not digits.isascii() or not digits.isdigit() or not 6 <= len(digits) <= 20:
        raise InvalidRequest("refund_account.number must be 6 to 20 digits (hyphens allowed)")
    return RefundAccount(bank=code, holder=holder, number=digits)
