"""Sectors of risk: which events define each, its levels, colours and wording."""

from domains.registry import DOMAINS, domain_names, get_domain
from domains.spec import DomainSpec, RiskLevel

__all__ = ["DOMAINS", "DomainSpec", "RiskLevel", "domain_names", "get_domain"]
