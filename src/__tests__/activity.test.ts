import { describe, expect, it } from 'vitest';

import { ActiveTime, Activity } from '../activity';

const S = 1000;

describe('ActiveTime', () => {
  it('counts foreground time up to the idle timeout after the last input', () => {
    const time = new ActiveTime(60 * S, 0);
    time.update(0, true, 0);
    // No input for 5 minutes: only the first minute is active.
    expect(time.take(300 * S)).toEqual({ active: 60 * S, period: 300 * S });
  });

  it('counts nothing before the first input, nor in the background', () => {
    const time = new ActiveTime(60 * S, 0);
    time.update(0, true, null);
    time.update(10 * S, false, 10 * S); // input while in the background
    expect(time.take(30 * S).active).toBe(0);
  });

  it('stops at the moment the notebook leaves the foreground', () => {
    const time = new ActiveTime(60 * S, 0);
    time.update(0, true, 0);
    time.update(20 * S, false, 0);
    time.update(40 * S, true, 40 * S);
    expect(time.take(50 * S).active).toBe(30 * S);
  });

  it('restarts the count at each take', () => {
    const time = new ActiveTime(60 * S, 0);
    time.update(0, true, 0);
    expect(time.take(30 * S)).toEqual({ active: 30 * S, period: 30 * S });
    // Idle from 60 s on: 30 s active in this period, not 60.
    expect(time.take(120 * S)).toEqual({ active: 30 * S, period: 90 * S });
    expect(time.take(200 * S)).toEqual({ active: 0, period: 80 * S });
  });
});

describe('Activity', () => {
  it('shares the page input between notebooks; only the one in front is active', () => {
    let front = 'a';
    const activity = new Activity(
      () => 10 * S,
      key => key === front
    );
    activity.add('a', 0);
    activity.add('b', 0);
    activity.input(0);
    activity.input(5 * S);
    front = 'b';
    activity.input(8 * S); // the click that brought b to the front counts for b
    const summary = activity.take(30 * S);
    expect(summary.get('a')).toEqual({ active: 8 * S, period: 30 * S });
    expect(summary.get('b')).toEqual({ active: 10 * S, period: 30 * S });
  });

  it('the idle timeout ends activity without any event', () => {
    const activity = new Activity(
      () => 60 * S,
      () => true
    );
    activity.add('a', 0);
    for (let t = 0; t <= 120 * S; t += 10 * S) {
      activity.input(t);
    }
    // Then nothing for 10 minutes.
    expect(activity.take(720 * S).get('a')?.active).toBe(180 * S);
  });

  it('a page hidden or blurred stops counting at refresh', () => {
    let visible = true;
    const activity = new Activity(
      () => 60 * S,
      () => visible
    );
    activity.add('a', 0);
    activity.input(0);
    visible = false;
    activity.refresh(15 * S);
    expect(activity.remove('a', 60 * S)).toEqual({ active: 15 * S, period: 60 * S });
    expect(activity.remove('a', 60 * S)).toBeNull();
  });
});
