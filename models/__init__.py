"""The shared-database schema (SQLAlchemy 2), its migrations and the provisioning loader.

Importing this package registers every table on :data:`Base.metadata`.
"""

from models.admins import AdminPrivilege, ApiToken, AuditEntry, PlatformAdmin
from models.base import Base
from models.billing import (
    ActiveCallSlot,
    BillableCall,
    DailyUsage,
    Rate,
    RatingPlanGroup,
    RatingProfile,
)
from models.locutions import ClientLocution
from models.platform import (
    ApplicationServer,
    BrandNotificationTemplate,
    ClientNotificationTemplate,
    ConfigVersion,
    MediaRelay,
    MediaRelaySet,
    NotificationTemplate,
    NotificationTemplateContent,
    Recording,
)
from models.routing import (
    CallAcl,
    CallAclRule,
    Carrier,
    MatchList,
    MatchListPattern,
    OutboundRoute,
    OutgoingDdiRule,
    OutgoingDdiRulePattern,
)
from models.tenants import (
    Brand,
    BrandFeature,
    Client,
    ClientAdmin,
    ClientAuthorizedSource,
    ClientFeature,
    ClientGeoipCountry,
    Corporation,
    Currency,
    Ddi,
    Extension,
    Terminal,
    User,
)

__all__ = [
    "ActiveCallSlot",
    "AdminPrivilege",
    "ApiToken",
    "ApplicationServer",
    "AuditEntry",
    "Base",
    "BillableCall",
    "Brand",
    "BrandFeature",
    "BrandNotificationTemplate",
    "CallAcl",
    "CallAclRule",
    "Carrier",
    "Client",
    "ClientAdmin",
    "ClientAuthorizedSource",
    "ClientFeature",
    "ClientGeoipCountry",
    "ClientLocution",
    "ClientNotificationTemplate",
    "ConfigVersion",
    "Corporation",
    "Currency",
    "DailyUsage",
    "Ddi",
    "Extension",
    "MatchList",
    "MatchListPattern",
    "MediaRelay",
    "MediaRelaySet",
    "NotificationTemplate",
    "NotificationTemplateContent",
    "OutboundRoute",
    "OutgoingDdiRule",
    "OutgoingDdiRulePattern",
    "PlatformAdmin",
    "Rate",
    "RatingPlanGroup",
    "RatingProfile",
    "Recording",
    "Terminal",
    "User",
]
