"""The Slack bot scopes Steward needs: what slack-manifest.yml asks for, and what `steward doctor` checks."""

BOT_SCOPES = ("commands", "chat:write", "im:write", "users:read", "usergroups:read", "files:write", "im:history",
              "channels:history", "groups:history")
