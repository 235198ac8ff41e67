"""Money is integer minor units plus an ISO 4217 currency. Never floats."""

from __future__ import annotations

# Currencies whose minor unit is not 1/100 (ISO 4217 exponent).
_EXPONENT = {"JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0, "BHD": 3, "KWD": 3, "JOD": 3,
             "OMR": 3, "TND": 3}


def exponent(currency: str) -> int:
    return _EXPONENT.get(currency.upper(), 2)


def format_money(amount_minor: int, currency: str) -> str:
    """`12345, "USD"` -> `"123.45 USD"`, exactly (integer arithmetic)."""
    exp = exponent(currency)
    sign = "-" if amount_minor < 0 else ""
    units, minor = divmod(abs(amount_minor), 10**exp)
    body = f"{units}.{str(minor).zfill(exp)}" if exp else str(units)
    return f"{sign}{body} {currency.upper()}"
