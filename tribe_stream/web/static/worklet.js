// Copies each 128-sample block of the microphone (channel 0) to the page, with the audio
// clock's frame number of its first sample (the page stamps sound on that clock: no jitter).
class TribeCapture extends AudioWorkletProcessor {
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) this.port.postMessage({ frame: currentFrame, samples: channel.slice(0) });
    return true;
  }
}
registerProcessor("tribe-capture", TribeCapture);
