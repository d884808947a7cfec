"""What can go wrong when someone works on a loss, or asks for the admin view, as exceptions that a
listener renders for them."""


class LossError(Exception):
    """A request about a loss that cannot be carried out; `str(error)` is what the rep is told."""


class LossNotFound(LossError):
    def __init__(self) -> None:
        super().__init__("This deal is no longer tracked by closedlost.")


class NotOwner(LossError):
    def __init__(self, owner_slack_id: str | None) -> None:
        owner = f"<@{owner_slack_id}>" if owner_slack_id else "its owner in the CRM"
        super().__init__(f"This deal belongs to {owner}: only they can log its reason.")
        self.owner_slack_id = owner_slack_id


class LossCancelled(LossError):
    def __init__(self) -> None:
        super().__init__("This deal was reopened in the CRM, so no reason is needed. Nothing was saved.")


class AlreadyLogged(LossError):
    def __init__(self) -> None:
        super().__init__(
            "A reason was already saved for this deal from another window. Nothing new was saved: "
            "use *Edit* on the message to change it."
        )


class RevisitNotFound(LossError):
    def __init__(self) -> None:
        super().__init__("This revisit is no longer tracked by closedlost.")


class NotRevisitOwner(LossError):
    def __init__(self, owner_slack_id: str | None) -> None:
        owner = f"<@{owner_slack_id}>" if owner_slack_id else "its owner in the CRM"
        super().__init__(f"This deal belongs to {owner}: only they can answer its revisit. Nothing was changed.")


class NotAdmin(Exception):
    """Someone not in ADMIN_USERS asked for the admin view or clicked its Retry; `str(error)` says so."""

    def __init__(self) -> None:
        super().__init__(
            "Only the bot's admins can use this: ask one of them, or whoever runs closedlost to add you "
            "to ADMIN_USERS. Nothing was changed."
        )


class NotManager(LossError):
    """Someone who neither is in ADMIN_USERS nor manages the deal's owner (TEAM_FILE) clicked Re-code."""

    def __init__(self) -> None:
        super().__init__(
            "Only the rep's manager (in the team file) or the bot's admins can re-code a reason. Nothing was changed."
        )


class NothingToRecode(LossError):
    def __init__(self) -> None:
        super().__init__("This deal has no reason logged yet, so there is nothing to re-code.")
