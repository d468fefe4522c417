"""Render ``deployments/nginx/prefect.conf.template`` into an nginx.conf.

    .venv/bin/python -m deployments.nginx.render --prefix /srv/nginx-prefect \\
        --listen 127.0.0.1:8080 --upstream 127.0.0.1:4200 \\
        --htpasswd /srv/nginx-prefect/htpasswd > /srv/nginx-prefect/nginx.conf
    mkdir -p /srv/nginx-prefect/tmp && nginx -p /srv/nginx-prefect -c /srv/nginx-prefect/nginx.conf
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

TEMPLATE = Path(__file__).with_name("prefect.conf.template")


def render(*, prefix: Path | str, listen: str, upstream: str, htpasswd: Path | str,
           daemon: bool = True) -> str:
    values = {"PREFIX": str(prefix), "LISTEN": listen, "UPSTREAM": upstream,
              "HTPASSWD": str(htpasswd), "DAEMON": "on" if daemon else "off"}
    text = TEMPLATE.read_text()
    for name, value in values.items():
        text = text.replace(f"@@{name}@@", value)
    if "@@" in text:
        raise ValueError("unfilled placeholder in the nginx template")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--listen", default="127.0.0.1:8080")
    parser.add_argument("--upstream", default="127.0.0.1:4200")
    parser.add_argument("--htpasswd", required=True)
    parser.add_argument("--foreground", action="store_true", help="daemon off")
    args = parser.parse_args(argv)
    sys.stdout.write(render(prefix=args.prefix, listen=args.listen, upstream=args.upstream,
                            htpasswd=args.htpasswd, daemon=not args.foreground))
    return 0


if __name__ == "__main__":
    sys.exit(main())
