<%!
    import re

    def uses(name, *texts):
        """True when the rendered code calls ``name.`` (sa., op.): the template imports
        only what the revision uses, so a new revision passes ruff check as written."""
        return any(re.search(r"\b%s\." % name, text or "") for text in texts)
%>"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

Why: <what this revision changes, why, and how it behaves on a live database>
"""

from collections.abc import Sequence
% if uses("sa", upgrades, downgrades) or uses("op", upgrades, downgrades) or imports:

% endif
% if uses("sa", upgrades, downgrades):
import sqlalchemy as sa
% endif
% if uses("op", upgrades, downgrades):
from alembic import op
% endif
% if imports:
${imports}
% endif

revision: str = ${repr(up_revision)}
down_revision: str | Sequence[str] | None = ${repr(down_revision)}
branch_labels: str | Sequence[str] | None = ${repr(branch_labels)}
depends_on: str | Sequence[str] | None = ${repr(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
