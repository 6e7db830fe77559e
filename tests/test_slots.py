"""Schedules: subscriber files and config give each person a Schedule; slots.py turns it into due moments.

The slot arithmetic is pure; the daylight-saving cases use the real tz database through zoneinfo.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest

from newsletter.config import config_from_mapping
from newsletter.errors import ConfigError, ProfileError
from newsletter.models import Schedule
from newsletter.slots import Slot, current_slot, describe_next, next_slot, slot_on
from newsletter.subscribers import FileSubscribers, load_subscriber_file

GOOD = "email: ada@example.org\ntopics: [graph neural networks]\n"


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


# -- the profile ---------------------------------------------------------------------------------


def test_a_file_schedule_overrides_the_config_defaults_key_by_key(tmp_path):
    config = config_from_mapping({"schedule": {"time": "06:15", "timezone": "Asia/Tokyo", "frequency": "weekdays"}},
                                 tmp_path)
    default = config.settings.schedule.default_schedule()
    assert default == Schedule("weekdays", time(6, 15), "Asia/Tokyo", 0)
    (tmp_path / "ada.yaml").write_text(GOOD + "schedule:\n  frequency: weekly\n  day: fri\n  time: '18:45'\n")
    (tmp_path / "bob.yaml").write_text(GOOD.replace("ada", "bob"))
    repo = FileSubscribers(tmp_path, default)
    assert repo.get("ada").schedule == Schedule("weekly", time(18, 45), "Asia/Tokyo", 4)
    assert repo.get("bob").schedule == default
    assert Schedule().describe() == "daily at 07:00 UTC"
    assert repo.get("ada").schedule.describe() == "every fri at 18:45 Asia/Tokyo"


def test_a_saved_schedule_loads_back_and_a_default_one_is_not_written(tmp_path):
    repo = FileSubscribers(tmp_path, Schedule(timezone="Europe/Berlin"))
    (tmp_path / "ada.yaml").write_text(GOOD + "schedule: {frequency: weekly, day: sun, time: '09:00'}\n")
    ada = repo.get("ada")
    assert repo.save(ada) == ada
    assert "day: sun" in (tmp_path / "ada.yaml").read_text()
    (tmp_path / "bob.yaml").write_text(GOOD.replace("ada", "bob"))
    repo.save(repo.get("bob"))
    assert "schedule" not in (tmp_path / "bob.yaml").read_text()


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("{timezone: Europe/Berln}", "schedule.timezone: 'Europe/Berln' is not a time zone; did you mean "
                                     "'Europe/Berlin'?"),
        ("{timezone: Mars/Olympus}", "schedule.timezone: 'Mars/Olympus' is not a time zone; use an IANA name"),
        ("{time: '7.30'}", 'schedule.time: must look like "07:30" (24-hour clock, quoted in YAML), got \'7.30\''),
        ("{time: '24:00'}", 'schedule.time: must look like "07:30"'),
        ("{frequency: hourly}", "schedule.frequency: must be one of 'daily', 'weekdays' or 'weekly', got 'hourly'"),
        ("{frequency: weekly, day: monday}", "schedule.day: must be one of 'mon', 'tue'"),
        ("{frequency: daily, day: mon}", "`day` only applies to frequency: weekly"),
        ("{tme: '07:30'}", "schedule.tme: unknown key (did you mean 'time'?); allowed keys here: day, frequency"),
        ("daily", "schedule: input should be a valid dictionary"),
    ],
)
def test_a_bad_schedule_names_the_file_the_field_and_the_fix(tmp_path, schedule, expected):
    path = tmp_path / "ada.yaml"
    path.write_text(GOOD + f"schedule: {schedule}\n")
    with pytest.raises(ProfileError) as caught:
        load_subscriber_file(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert expected in str(caught.value)


def test_the_config_schedule_is_validated_too(tmp_path):
    with pytest.raises(ConfigError, match=r"schedule.timezone: 'Europe/Pari' is not a time zone; did you mean "
                                          r"'Europe/Paris'\?"):
        config_from_mapping({"schedule": {"timezone": "Europe/Pari"}}, tmp_path)
    with pytest.raises(ConfigError, match=r'schedule.time: must look like "07:30"'):
        config_from_mapping({"schedule": {"time": "7am"}}, tmp_path)


# -- slots ------------------------------------------------------------------------------------------


def test_daily_slots_in_three_zones():
    moment = utc(2026, 3, 12, 12, 0)
    for zone, expected_hour in (("UTC", 7), ("Europe/Berlin", 6), ("America/New_York", 11)):
        schedule = Schedule(time=time(7, 0), timezone=zone)
        assert current_slot(schedule, moment) == Slot(utc(2026, 3, 12, expected_hour, 0), date(2026, 3, 12))
        assert next_slot(schedule, moment) == Slot(utc(2026, 3, 13, expected_hour, 0), date(2026, 3, 13))
    # Tokyo's 07:00 on the 13th is 22:00 UTC on the 12th: the slot carries the local date.
    tokyo = Schedule(time=time(7, 0), timezone="Asia/Tokyo")
    assert next_slot(tokyo, moment) == Slot(utc(2026, 3, 12, 22, 0), date(2026, 3, 13))


def test_a_slot_exactly_now_is_current_not_next():
    schedule = Schedule(time=time(7, 30))
    assert current_slot(schedule, utc(2026, 3, 12, 7, 30)).local_date == date(2026, 3, 12)
    assert next_slot(schedule, utc(2026, 3, 12, 7, 30)).local_date == date(2026, 3, 13)


def test_weekdays_skip_the_weekend_and_weekly_keeps_its_day():
    weekdays = Schedule("weekdays", time(7, 0))
    friday_noon = utc(2026, 3, 13, 12, 0)
    assert next_slot(weekdays, friday_noon).local_date == date(2026, 3, 16)  # Monday
    assert current_slot(weekdays, utc(2026, 3, 15, 12, 0)).local_date == date(2026, 3, 13)  # Sunday -> Friday
    weekly = Schedule("weekly", time(7, 0), day=2)  # Wednesday
    assert next_slot(weekly, friday_noon).local_date == date(2026, 3, 18)
    assert current_slot(weekly, friday_noon).local_date == date(2026, 3, 11)
    assert slot_on(weekly, date(2026, 3, 12)) is None


def walk(schedule: Schedule, start: datetime, count: int) -> list[Slot]:
    """The next `count` slots, each found from the one before, as the scheduler finds them."""
    slots, moment = [], start
    for _ in range(count):
        slots.append(next_slot(schedule, moment))
        moment = slots[-1].at
    return slots


def test_spring_forward_0230_goes_out_once_when_the_clocks_have_jumped():
    # Europe/Berlin, 29 March 2026: 02:00 CET becomes 03:00 CEST; 02:30 does not exist that day.
    schedule = Schedule(time=time(2, 30), timezone="Europe/Berlin")
    slots = walk(schedule, utc(2026, 3, 27, 12, 0), 4)
    assert [s.local_date for s in slots] == [date(2026, 3, 28), date(2026, 3, 29), date(2026, 3, 30),
                                             date(2026, 3, 31)]
    jump_day = slots[1]
    assert jump_day.at == utc(2026, 3, 29, 1, 30)  # 03:30 CEST, the first moment 02:30 "has passed"
    assert jump_day.local("Europe/Berlin").strftime("%H:%M %Z") == "03:30 CEST"
    assert [s.local("Europe/Berlin").hour for s in (slots[0], slots[2], slots[3])] == [2, 2, 2]


def test_fall_back_0130_goes_out_once_at_its_first_occurrence():
    # America/New_York, 1 November 2026: 02:00 EDT becomes 01:00 EST; 01:30 happens twice.
    schedule = Schedule(time=time(1, 30), timezone="America/New_York")
    slots = walk(schedule, utc(2026, 10, 30, 12, 0), 4)
    assert [s.local_date for s in slots] == [date(2026, 10, 31), date(2026, 11, 1), date(2026, 11, 2),
                                             date(2026, 11, 3)]
    assert slots[1].at == utc(2026, 11, 1, 5, 30)  # 01:30 EDT
    # Between the two 01:30s the slot of that day is already current and the next one is tomorrow's.
    second_0130 = utc(2026, 11, 1, 6, 30)
    assert current_slot(schedule, second_0130) == slots[1]
    assert next_slot(schedule, second_0130) == slots[2]


def test_moments_must_be_timezone_aware():
    with pytest.raises(ValueError, match="timezone-aware"):
        next_slot(Schedule(), datetime(2026, 3, 12, 7, 0))


def test_describe_next_gives_local_time_and_utc_naming_the_utc_day_when_it_differs():
    moment = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert describe_next(Schedule("daily", time(7, 30), "Europe/Berlin"), moment) == \
        "Wed 02 Dec 2026, 07:30 Europe/Berlin (06:30 UTC)"
    assert describe_next(Schedule("weekly", time(0, 30), "Asia/Tokyo", day=3), moment) == \
        "Thu 03 Dec 2026, 00:30 Asia/Tokyo (Wed 02 Dec, 15:30 UTC)"
    assert describe_next(Schedule("weekdays", time(7, 0), "UTC"), datetime(2026, 12, 4, 8, tzinfo=UTC)) == \
        "Mon 07 Dec 2026, 07:00 UTC"
