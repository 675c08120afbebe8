"""The four sectors Kizashi covers, and the one registry that names them."""

from __future__ import annotations

from domains.spec import DomainSpec, RiskLevel

_LOW = (46, 139, 87)
_MODERATE = (244, 196, 48)
_HIGH = (237, 125, 49)
_VERY_HIGH = (192, 0, 0)


def _levels(moderate: float, high: float, very_high: float, what: str) -> tuple[RiskLevel, ...]:
    """A four-step scale with the same colours in every domain."""
    return (
        RiskLevel("low", "Low", 0.0, _LOW, f"{what} is unlikely in this window."),
        RiskLevel(
            "moderate", "Moderate", moderate, _MODERATE, f"{what} is possible; keep an eye on it."
        ),
        RiskLevel("high", "High", high, _HIGH, f"{what} is likely; consider preparing a response."),
        RiskLevel(
            "very_high", "Very high", very_high, _VERY_HIGH, f"{what} is very likely; act now."
        ),
    )


TRAFFIC = DomainSpec(
    name="traffic",
    title="Traffic accidents",
    event_kinds=("traffic_accident",),
    horizon_hours=6,
    levels=_levels(0.05, 0.15, 0.30, "A traffic accident"),
    description="Road traffic accidents reported by police or the transit operator.",
)
SAFETY = DomainSpec(
    name="safety",
    title="Crime and safety",
    event_kinds=("theft", "assault", "vandalism"),
    horizon_hours=6,
    levels=_levels(0.05, 0.15, 0.30, "A crime or safety incident"),
    description="Thefts, assaults and vandalism reported to the police.",
)
CROWD = DomainSpec(
    name="crowd",
    title="Crowd crush and congestion",
    event_kinds=("crowd_crush", "severe_congestion"),
    horizon_hours=6,
    levels=_levels(0.04, 0.12, 0.25, "Dangerous crowding"),
    description="Dangerous crowding at stations, events and busy streets.",
)
DISASTER = DomainSpec(
    name="disaster",
    title="Flooding and heat illness",
    event_kinds=("flooding", "heat_illness"),
    horizon_hours=6,
    levels=_levels(0.04, 0.12, 0.25, "Flooding or heat illness"),
    description="Local flooding after heavy rain and heat-illness emergencies.",
)

DOMAINS: dict[str, DomainSpec] = {spec.name: spec for spec in (TRAFFIC, SAFETY, CROWD, DISASTER)}


def get_domain(name: str) -> DomainSpec:
    """The registered domain called ``name``; a clear error for an unknown one."""
    try:
        return DOMAINS[name]
    except KeyError:
        known = ", ".join(DOMAINS)
        raise KeyError(f"unknown domain {name!r}; known domains: {known}") from None


def domain_names() -> list[str]:
    """Names of all registered domains, in registry order."""
    return list(DOMAINS)
