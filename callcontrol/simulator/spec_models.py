"""The models of the simulated ARI's api-docs: objects and the events we emit.

Each resource declares the models it returns, as Asterisk's api-docs do; ``events``
declares every event, whose Channel/Bridge/Playback/LiveRecording-typed fields are what
aioari's ``on_channel_event`` and friends look up to hand objects to listeners.
"""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]


def field(kind: str, what: str, required: bool = True) -> Json:
    return {"type": kind, "description": what, "required": required}


def model(name: str, what: str, /, **fields: Json) -> tuple[str, Json]:
    return name, {"id": name, "description": what, "properties": fields}


def event(name: str, what: str, /, **fields: Json) -> tuple[str, Json]:
    key, body = model(name, what, **fields)
    body["extends"] = "Event"
    return key, body


CHANNEL = field("Channel", "The channel.")
BRIDGE = field("Bridge", "The bridge.")

MODELS: dict[str, dict[str, Json]] = {
    "asterisk": dict(
        [
            model(
                "AsteriskInfo",
                "This Asterisk: build, system, configuration and status.",
                build=field("object", "How it was built.", False),
                system=field("object", "Version and entity id.", False),
                config=field("object", "Name, default language, limits.", False),
                status=field("object", "Start-up and last reload times.", False),
            ),
            model("Variable", "The value of a variable.", value=field("string", "Its value.")),
        ]
    ),
    "channels": dict(
        [
            model(
                "CallerID",
                "A caller's name and number.",
                name=field("string", "Name."),
                number=field("string", "Number."),
            ),
            model(
                "DialplanCEP",
                "Where a channel is in the dialplan.",
                context=field("string", "Context."),
                exten=field("string", "Extension."),
                priority=field("long", "Priority."),
                app_name=field("string", "Application running."),
                app_data=field("string", "Its arguments."),
            ),
            model(
                "Channel",
                "A channel: one leg of a call.",
                id=field("string", "Unique id."),
                name=field("string", "Name, e.g. PJSIP/alice-00000001."),
                state=field("string", "Down, Ring, Ringing, Up …"),
                protocol_id=field("string", "SIP Call-ID.", False),
                caller=field("CallerID", "Caller."),
                connected=field("CallerID", "Connected party."),
                accountcode=field("string", "Account code."),
                dialplan=field("DialplanCEP", "Dialplan location."),
                creationtime=field("Date", "When it was created."),
                language=field("string", "Language."),
                channelvars=field("object", "Variables set with report_events.", False),
            ),
        ]
    ),
    "bridges": dict(
        [
            model(
                "Bridge",
                "A bridge of channels.",
                id=field("string", "Unique id."),
                technology=field("string", "Bridging technology."),
                bridge_type=field("string", "mixing or holding."),
                bridge_class=field("string", "Class (stasis)."),
                creator=field("string", "Creator."),
                name=field("string", "Name."),
                channels=field("List[string]", "Ids of its channels."),
                creationtime=field("Date", "When it was created."),
                video_mode=field("string", "Video mode.", False),
            )
        ]
    ),
    "playbacks": dict(
        [
            model(
                "Playback",
                "Media playing to a channel.",
                id=field("string", "Unique id."),
                media_uri=field("string", "Medium playing."),
                next_media_uri=field("string", "Medium after this one.", False),
                target_uri=field("string", "channel:<id>."),
                language=field("string", "Language.", False),
                state=field("string", "queued, playing, continuing, done, failed."),
            )
        ]
    ),
    "recordings": dict(
        [
            model(
                "StoredRecording",
                "A recording on disk.",
                name=field("string", "Name."),
                format=field("string", "Format."),
            ),
            model(
                "LiveRecording",
                "A recording in progress.",
                name=field("string", "Name."),
                format=field("string", "Format."),
                target_uri=field("string", "channel:<id> or bridge:<id>."),
                state=field("string", "queued, recording, done, failed, canceled."),
                duration=field("int", "Seconds recorded.", False),
                talking_duration=field("int", "Seconds of talk.", False),
                silence_duration=field("int", "Seconds of silence.", False),
                cause=field("string", "Why it failed.", False),
            ),
        ]
    ),
    "events": dict(
        [
            model(
                "Message",
                "Base of every message on the events websocket.",
                type=field("string", "Its kind."),
                asterisk_id=field("string", "The Asterisk that sent it.", False),
            ),
            model(
                "Event",
                "Base of every event of an application.",
                application=field("string", "The application."),
                timestamp=field("Date", "When it happened."),
            ),
            event(
                "StasisStart",
                "A channel entered the application.",
                args=field("List[string]", "Arguments of Stasis()."),
                channel=CHANNEL,
                replace_channel=field("Channel", "Channel it replaces.", False),
            ),
            event("StasisEnd", "A channel left the application.", channel=CHANNEL),
            event("ChannelStateChange", "A channel's state changed.", channel=CHANNEL),
            event(
                "ChannelDtmfReceived",
                "The far end pressed a key.",
                digit=field("string", "The digit."),
                duration_ms=field("int", "How long, in milliseconds."),
                channel=CHANNEL,
            ),
            event(
                "ChannelHangupRequest",
                "A hang-up was requested.",
                cause=field("int", "Q.850 cause.", False),
                tech_cause=field("int", "The SIP response behind it.", False),
                soft=field("boolean", "Requested through ARI.", False),
                channel=CHANNEL,
            ),
            event(
                "ChannelDestroyed",
                "A channel is gone.",
                cause=field("int", "Q.850 cause."),
                cause_txt=field("string", "Its text."),
                tech_cause=field("int", "The SIP response behind it.", False),
                channel=CHANNEL,
            ),
            event(
                "ChannelVarset",
                "A variable was set.",
                variable=field("string", "Its name."),
                value=field("string", "Its value."),
                channel=field("Channel", "The channel (none for globals).", False),
            ),
            event(
                "ChannelCallerId",
                "A channel's caller changed.",
                caller_presentation=field("int", "Presentation."),
                caller_presentation_txt=field("string", "Its text."),
                channel=CHANNEL,
            ),
            event("ChannelConnectedLine", "A channel's connected party changed.", channel=CHANNEL),
            event(
                "ChannelDialplan",
                "A channel's place in the dialplan changed.",
                channel=CHANNEL,
                dialplan_app=field("string", "Application it runs."),
                dialplan_app_data=field("string", "Its arguments."),
            ),
            event(
                "ChannelEnteredBridge",
                "A channel joined a bridge.",
                bridge=BRIDGE,
                channel=field("Channel", "The channel.", False),
            ),
            event("ChannelLeftBridge", "A channel left a bridge.", bridge=BRIDGE, channel=CHANNEL),
            event("BridgeDestroyed", "A bridge is gone.", bridge=BRIDGE),
            event(
                "Dial",
                "Progress of a dial.",
                caller=field("Channel", "The channel dialled for.", False),
                peer=field("Channel", "The dialled channel."),
                forward=field("string", "Forwarding target.", False),
                forwarded=field("Channel", "Forwarded channel.", False),
                dialstring=field("string", "What was dialled.", False),
                dialstatus=field("string", "RINGING, ANSWER, BUSY, NOANSWER …"),
            ),
            *(
                event(name, what, playback=field("Playback", "The playback."))
                for name, what in (
                    ("PlaybackStarted", "A playback started."),
                    ("PlaybackContinuing", "A playback moved to its next medium."),
                    ("PlaybackFinished", "A playback ended."),
                )
            ),
            *(
                event(name, what, recording=field("LiveRecording", "The recording."))
                for name, what in (
                    ("RecordingStarted", "A recording started."),
                    ("RecordingFinished", "A recording ended and was stored."),
                    ("RecordingFailed", "A recording failed."),
                )
            ),
            event("ApplicationReplaced", "Another websocket took this application."),
        ]
    ),
    "applications": dict(
        [
            model(
                "Application",
                "A Stasis application and the event types it is sent.",
                name=field("string", "Its name."),
                channel_ids=field("List[string]", "Channels it is subscribed to."),
                bridge_ids=field("List[string]", "Bridges it is subscribed to."),
                endpoint_ids=field("List[string]", "Endpoints it is subscribed to."),
                device_names=field("List[string]", "Device states it is subscribed to."),
                events_allowed=field("List[object]", "Event types sent (none listed: all)."),
                events_disallowed=field("List[object]", "Event types never sent."),
            ),
        ]
    ),
}
