//! Decode and encode throughput of this codec and of mqttbytes 0.6 on the
//! same packets, in one run. Packets use MQTT 3.1.1 (mqttbytes' `v4`) unless
//! the name says v5.
//!
//! Run with `cargo bench -p codec --bench codec`. Each decode iteration gets a
//! fresh copy of the packet bytes, made outside the measured time, and drops
//! the decoded packet inside it, as a broker does after handling it. Both
//! libraries encode packets that they decoded from the same bytes.
//!
//! Times are the CPU time of the benchmark thread, not wall time, so that
//! time slices given to other processes on a shared machine do not count.

use std::hint::black_box;
use std::num::NonZeroU16;
use std::time::Duration;

use codec::{
    decode, encode, ByteString, Bytes, BytesMut, Connect, LastWill, Packet, Properties,
    ProtocolVersion, Publish, QoS, Subscribe, SubscribeFilter,
};
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use mqttbytes::{v4, v5};

/// Criterion measurement of the CPU time of the calling thread, read with
/// `clock_gettime(CLOCK_THREAD_CPUTIME_ID)`.
struct ThreadCpuTime;

fn thread_cpu_time() -> Duration {
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `time` is a valid, writable timespec for the call to fill in.
    let result = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut time) };
    assert_eq!(result, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(time.tv_sec as u64, time.tv_nsec as u32)
}

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        thread_cpu_time()
    }

    fn end(&self, start: Duration) -> Duration {
        thread_cpu_time().saturating_sub(start)
    }

    fn add(&self, first: &Duration, second: &Duration) -> Duration {
        *first + *second
    }

    fn zero(&self) -> Duration {
        Duration::ZERO
    }

    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        // Both measure nanoseconds, so wall time's formatter fits.
        static WALL_TIME: WallTime = WallTime;
        WALL_TIME.formatter()
    }
}

fn publish(payload_len: usize) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: ByteString::from_static("sensors/building-1/floor-2/temperature"),
        pkid: NonZeroU16::new(42),
        payload: Bytes::from(vec![b'x'; payload_len]),
        properties: Properties::default(),
    })
}

fn subscribe() -> Packet {
    let filters = (0..10)
        .map(|index| SubscribeFilter::new(format!("sensors/+/floor-{index}/#"), QoS::AtLeastOnce))
        .collect();
    Packet::Subscribe(Subscribe {
        pkid: NonZeroU16::new(7).unwrap(),
        filters,
        properties: Properties::default(),
    })
}

fn connect() -> Packet {
    Packet::Connect(Connect {
        protocol: ProtocolVersion::V3_1_1,
        clean_start: true,
        keep_alive: 60,
        client_id: ByteString::from_static("bench-client-0001"),
        will: Some(LastWill {
            topic: ByteString::from_static("clients/bench-client-0001/status"),
            payload: Bytes::from_static(b"offline"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties::default(),
        }),
        username: Some(ByteString::from_static("user")),
        password: Some(Bytes::from_static(b"password")),
        properties: Properties::default(),
    })
}

/// Decodes the encoding of `packet`, for the encode benchmarks: the payload
/// then sits in a buffer laid out as mqttbytes' copy, so both libraries copy
/// it from the same offset.
fn ours(packet: &Packet, version: ProtocolVersion) -> Packet {
    let mut buf = encoded(packet, version);
    decode(&mut buf, Some(version), usize::MAX)
        .expect("the codec decodes the packet")
        .expect("the packet is complete")
}

/// Converts a packet to mqttbytes v4 types, for the encode benchmarks.
fn theirs_v4(packet: &Packet) -> v4::Packet {
    let mut buf = encoded(packet, ProtocolVersion::V3_1_1);
    v4::read(&mut buf, usize::MAX).expect("mqttbytes decodes the packet")
}

/// Converts a packet to mqttbytes v5 types.
fn theirs_v5(packet: &Packet) -> v5::Packet {
    let mut buf = encoded(packet, ProtocolVersion::V5);
    v5::read(&mut buf, usize::MAX).expect("mqttbytes decodes the packet")
}

fn encoded(packet: &Packet, version: ProtocolVersion) -> BytesMut {
    let mut buf = BytesMut::new();
    encode(packet, version, &mut buf);
    buf
}

fn write_v4(packet: &v4::Packet, out: &mut BytesMut) {
    let result = match packet {
        v4::Packet::Publish(publish) => publish.write(out),
        v4::Packet::Subscribe(subscribe) => subscribe.write(out),
        v4::Packet::Connect(connect) => connect.write(out),
        _ => unreachable!("only these packets are benchmarked"),
    };
    result.expect("mqttbytes encodes the packet");
}

fn write_v5(packet: &v5::Packet, out: &mut BytesMut) {
    let result = match packet {
        v5::Packet::Publish(publish) => publish.write(out),
        _ => unreachable!("only PUBLISH is benchmarked for v5"),
    };
    result.expect("mqttbytes encodes the packet");
}

fn bench_case(
    criterion: &mut Criterion<ThreadCpuTime>,
    name: &str,
    packet: &Packet,
    version: ProtocolVersion,
) {
    let bytes = encoded(packet, version);
    let mut group = criterion.benchmark_group(name);
    group.throughput(Throughput::Bytes(bytes.len() as u64));

    group.bench_function("decode/codec", |bencher| {
        bencher.iter_batched(
            || bytes.clone(),
            |mut buf| {
                black_box(decode(&mut buf, Some(version), usize::MAX).unwrap());
            },
            BatchSize::SmallInput,
        )
    });
    if version.is_v5() {
        group.bench_function("decode/mqttbytes", |bencher| {
            bencher.iter_batched(
                || bytes.clone(),
                |mut buf| {
                    black_box(v5::read(&mut buf, usize::MAX).unwrap());
                },
                BatchSize::SmallInput,
            )
        });
    } else {
        group.bench_function("decode/mqttbytes", |bencher| {
            bencher.iter_batched(
                || bytes.clone(),
                |mut buf| {
                    black_box(v4::read(&mut buf, usize::MAX).unwrap());
                },
                BatchSize::SmallInput,
            )
        });
    }

    let mut out = BytesMut::with_capacity(bytes.len());
    let packet = ours(packet, version);
    group.bench_function("encode/codec", |bencher| {
        bencher.iter(|| {
            out.clear();
            encode(black_box(&packet), version, &mut out);
        })
    });
    if version.is_v5() {
        let theirs = theirs_v5(&packet);
        group.bench_function("encode/mqttbytes", |bencher| {
            bencher.iter(|| {
                out.clear();
                write_v5(black_box(&theirs), &mut out);
            })
        });
    } else {
        let theirs = theirs_v4(&packet);
        group.bench_function("encode/mqttbytes", |bencher| {
            bencher.iter(|| {
                out.clear();
                write_v4(black_box(&theirs), &mut out);
            })
        });
    }
    group.finish();
}

fn benches(criterion: &mut Criterion<ThreadCpuTime>) {
    let v3 = ProtocolVersion::V3_1_1;
    bench_case(criterion, "publish_16B", &publish(16), v3);
    bench_case(criterion, "publish_1KB", &publish(1024), v3);
    bench_case(criterion, "publish_64KB", &publish(64 * 1024), v3);
    bench_case(
        criterion,
        "publish_1KB_v5",
        &publish(1024),
        ProtocolVersion::V5,
    );
    bench_case(criterion, "subscribe_10_filters", &subscribe(), v3);
    bench_case(criterion, "connect_with_will", &connect(), v3);
}

criterion_group! {
    name = codec_benches;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = benches
}
criterion_main!(codec_benches);
